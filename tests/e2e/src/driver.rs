//! A small W3C WebDriver client over HTTP: the session tauri-driver opens on the app, and the
//! commands the E2E tests use (scripts, finding and clicking elements, typing, a pointer drag,
//! screenshots).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::until;

/// A WebDriver session.
#[derive(Debug)]
pub struct Driver {
    http: reqwest::blocking::Client,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ends the session (and so the app) also when the test fails half-way.
        self.quit();
    }
}

/// A found element's id.
pub type Element = String;

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    /// Opens a session on the WebDriver at `url` for the Tauri app `application`.
    pub fn new(url: &str, application: &Path) -> Result<Self, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| e.to_string())?;
        let v: Value = http
            .post(format!("{url}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "tauri:options": {"application": application}
            }}}))
            .send()
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())?;
        let id = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session: {v}"))?;
        Ok(Self {
            http,
            base: format!("{url}/session/{id}"),
        })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// A WebDriver command's value, or the error value it answered with.
    fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
            .json()
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        if v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    /// Runs `script` (a function body) with `args` in the page.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Every element matching the CSS `selector`.
    pub fn find_all(&self, selector: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": selector});
        let v = match self.try_call(reqwest::Method::POST, "/elements", Some(body)) {
            Ok(v) => v,
            // Found while the calendar redrew it: nothing for now, look again.
            Err(e) if e["error"] == "stale element reference" => return Vec::new(),
            Err(e) => panic!("WebDriver /elements: {e}"),
        };
        if std::env::var_os("GPUBOOK_E2E_DEBUG").is_some() {
            eprintln!("find_all {selector}: {v}");
        }
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `selector`, waiting up to `secs`.
    pub fn wait_for(&self, selector: &str, secs: u64) -> Element {
        until(selector, secs, || {
            self.find_all(selector).into_iter().next()
        })
    }

    /// Clicks an element.
    pub fn click(&self, el: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        );
    }

    /// Types into an element.
    pub fn type_into(&self, el: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        );
    }

    /// W3C pointer actions: press at `from`, move through `via` to `to`, release.
    pub fn drag(&self, from: (f64, f64), to: (f64, f64)) {
        let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": from.0.round() as i64, "y": from.1.round() as i64},
                {"type": "pointerDown", "button": 0},
                {"type": "pause", "duration": 100},
                {"type": "pointerMove", "duration": 250, "origin": "viewport", "x": mid.0.round() as i64, "y": mid.1.round() as i64},
                {"type": "pointerMove", "duration": 250, "origin": "viewport", "x": to.0.round() as i64, "y": to.1.round() as i64},
                {"type": "pause", "duration": 100},
                {"type": "pointerUp", "button": 0}
            ]
        }]});
        self.call(reqwest::Method::POST, "/actions", Some(actions));
        let _ = self.http.delete(format!("{}/actions", self.base)).send();
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Ends the session (the app quits).
    pub fn quit(&self) {
        let _ = self.http.delete(&self.base).send();
    }
}
