//! The CalDAV requests gpubook makes (RFC 4791 over WebDAV, RFC 4918): what a collection is
//! (PROPFIND Depth 0), what it holds (PROPFIND Depth 1, then calendar-multiget for the objects
//! it does not know yet), and conditional PUT, GET and DELETE of one object. Statuses become
//! [`CaldavError`]s here; nothing above this file sees HTTP.

use super::CaldavError;
use crate::secrets::Secret;
use reqwest::{header, Method, StatusCode, Url};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many objects one calendar-multiget asks for.
const MULTIGET_BATCH: usize = 100;
/// How much of an error answer's body goes into an error message.
const BODY_EXCERPT: usize = 300;

pub(super) const DAV: &str = "DAV:";
pub(super) const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";

/// One calendar collection, with the account that may write it.
#[derive(Debug)]
pub(crate) struct Dav {
    /// The HTTP client: connection pool, timeouts.
    http: reqwest::Client,
    /// The collection, ending in '/'.
    collection: Url,
    /// Who we are to the server.
    user: String,
    /// Their password.
    password: Secret,
    /// How many conditional writes the server refused with 412 (the object had changed).
    conflicts: AtomicU64,
}

/// A calendar object on the server.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// Its path on the server.
    pub href: String,
    /// Its ETag, when the server gave one.
    pub etag: Option<String>,
    /// Its iCalendar text (empty when only listed).
    pub data: String,
}

/// What a PUT or DELETE may require of the object on the server.
#[derive(Debug, Clone)]
pub(crate) enum Precondition {
    /// It must not exist yet (`If-None-Match: *`): creating never overwrites.
    Absent,
    /// It must be unchanged since we saw this ETag (`If-Match`).
    Unchanged(String),
    /// Nothing: for servers that give no ETags.
    None,
}

/// How a conditional write went.
#[derive(Debug)]
pub(crate) enum Written {
    /// Done; the object's new ETag when the server said it.
    Done(Option<String>),
    /// 412: the object changed (or appeared, or went) since we looked.
    Changed,
    /// DELETE of an object that is not there (any more).
    Gone,
}

impl Dav {
    /// A client for the collection at `url` (a trailing '/' is added when missing).
    pub fn new(url: &str, user: &str, password: Secret) -> Result<Self, CaldavError> {
        let bad = |reason: &str| CaldavError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let mut collection = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(collection.scheme(), "http" | "https") {
            return Err(bad("use an http:// or https:// URL"));
        }
        if collection.query().is_some() || collection.fragment().is_some() {
            return Err(bad("a collection URL has no query or fragment"));
        }
        if !collection.path().ends_with('/') {
            let p = format!("{}/", collection.path());
            collection.set_path(&p);
        }
        let http =
            http_client(reqwest::redirect::Policy::default()).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            http,
            collection,
            user: user.to_string(),
            password,
            conflicts: AtomicU64::new(0),
        })
    }

    /// How many writes the server refused with 412 Precondition Failed so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// The collection's URL.
    pub fn url(&self) -> &str {
        self.collection.as_str()
    }

    /// The collection's path, which the server's hrefs start with.
    pub fn path(&self) -> &str {
        self.collection.path()
    }

    /// Checks that the URL is a calendar collection that the account may use.
    pub async fn check(&self) -> Result<(), CaldavError> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:resourcetype/><C:supported-calendar-component-set/></D:prop>
</D:propfind>"#;
        let url = self.collection.clone();
        let resp = self.dav_request("PROPFIND", &url, "0", body).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        let not_calendar = |why: &str| CaldavError::NotACalendar {
            url: self.url().to_string(),
            why: why.to_string(),
        };
        if status == StatusCode::NOT_FOUND {
            return Err(CaldavError::NotFound {
                url: self.url().to_string(),
            });
        }
        if status != StatusCode::MULTI_STATUS {
            self.fail("PROPFIND", &url, status, &text)?;
            return Err(not_calendar(&format!(
                "it answered {status} to PROPFIND: not a WebDAV collection"
            )));
        }
        let doc = roxmltree::Document::parse(&text).map_err(|e| self.protocol(&url, e))?;
        let own = doc
            .descendants()
            .filter(|n| n.has_tag_name((DAV, "response")))
            .find(|r| {
                child_text(*r, "href")
                    .map(|h| self.same_path(&h, self.path()))
                    .unwrap_or(false)
            })
            .or_else(|| {
                doc.descendants()
                    .find(|n| n.has_tag_name((DAV, "response")))
            })
            .ok_or_else(|| self.protocol(&url, "no response in the multistatus"))?;
        let rtype = own
            .descendants()
            .find(|n| n.has_tag_name((DAV, "resourcetype")));
        let is_calendar = rtype
            .map(|t| t.children().any(|c| c.has_tag_name((CALDAV, "calendar"))))
            .unwrap_or(false);
        if !is_calendar {
            let is_collection = rtype
                .map(|t| t.children().any(|c| c.has_tag_name((DAV, "collection"))))
                .unwrap_or(false);
            return Err(not_calendar(if is_collection {
                "a collection, but not a calendar"
            } else {
                "not a collection"
            }));
        }
        // A calendar that says which components it takes must take events.
        if let Some(set) = own
            .descendants()
            .find(|n| n.has_tag_name((CALDAV, "supported-calendar-component-set")))
        {
            let comps: Vec<_> = set
                .children()
                .filter(|c| c.has_tag_name((CALDAV, "comp")))
                .filter_map(|c| c.attribute("name"))
                .collect();
            if !comps.is_empty() && !comps.iter().any(|c| c.eq_ignore_ascii_case("VEVENT")) {
                return Err(not_calendar(&format!(
                    "a calendar for {} only, not for events",
                    comps.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Sends a Depth-1 `method` with `body` to `url` and returns its 207 Multi-Status body;
    /// any other answer becomes the typed error it stands for.
    async fn multistatus(
        &self,
        method: &str,
        url: &Url,
        body: &str,
    ) -> Result<String, CaldavError> {
        let resp = self.dav_request(method, url, "1", body).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        if status != StatusCode::MULTI_STATUS {
            self.fail(method, url, status, &text)?;
            return Err(self.protocol(url, format!("{method} answered {status}")));
        }
        Ok(text)
    }

    /// Every object in the collection, with its ETag (no data).
    pub async fn list(&self) -> Result<Vec<Remote>, CaldavError> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/></D:prop></D:propfind>"#;
        let url = self.collection.clone();
        let text = self.multistatus("PROPFIND", &url, body).await?;
        let doc = roxmltree::Document::parse(&text).map_err(|e| self.protocol(&url, e))?;
        let mut out = Vec::new();
        for r in doc
            .descendants()
            .filter(|n| n.has_tag_name((DAV, "response")))
        {
            let Some(href) = child_text(r, "href") else {
                continue;
            };
            let is_collection = r
                .descendants()
                .filter(|n| n.has_tag_name((DAV, "resourcetype")))
                .any(|t| t.children().any(|c| c.has_tag_name((DAV, "collection"))));
            if is_collection || self.same_path(&href, self.path()) {
                continue;
            }
            out.push(Remote {
                href: self.path_of(&href),
                etag: prop_text(r, (DAV, "getetag")),
                data: String::new(),
            });
        }
        Ok(out)
    }

    /// The objects at `hrefs`, with their data (calendar-multiget, in batches).
    pub async fn fetch(&self, hrefs: &[String]) -> Result<Vec<Remote>, CaldavError> {
        let mut out = Vec::new();
        for batch in hrefs.chunks(MULTIGET_BATCH) {
            let mut body = String::from(
                r#"<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
"#,
            );
            for h in batch {
                body.push_str(&format!("  <D:href>{}</D:href>\n", xml_escape(h)));
            }
            body.push_str("</C:calendar-multiget>");
            let url = self.collection.clone();
            let text = self.multistatus("REPORT", &url, &body).await?;
            let doc = roxmltree::Document::parse(&text).map_err(|e| self.protocol(&url, e))?;
            for r in doc
                .descendants()
                .filter(|n| n.has_tag_name((DAV, "response")))
            {
                let (Some(href), Some(data)) = (
                    child_text(r, "href"),
                    prop_text(r, (CALDAV, "calendar-data")),
                ) else {
                    continue;
                };
                out.push(Remote {
                    href: self.path_of(&href),
                    etag: prop_text(r, (DAV, "getetag")),
                    data,
                });
            }
        }
        Ok(out)
    }

    /// The object at `href`; `None` when there is none.
    pub async fn get(&self, href: &str) -> Result<Option<Remote>, CaldavError> {
        let url = self.join(href)?;
        let resp = self
            .http
            .get(url.clone())
            .basic_auth(&self.user, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let etag = etag_of(&resp);
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(None);
        }
        if !status.is_success() {
            self.fail("GET", &url, status, &text)?;
        }
        Ok(Some(Remote {
            href: href.to_string(),
            etag,
            data: text,
        }))
    }

    /// Writes `body` to `href` if `pre` holds.
    pub async fn put(
        &self,
        href: &str,
        body: String,
        pre: &Precondition,
    ) -> Result<Written, CaldavError> {
        let url = self.join(href)?;
        let req = self
            .http
            .put(url.clone())
            .basic_auth(&self.user, Some(self.password.expose()))
            .header(header::CONTENT_TYPE, "text/calendar; charset=utf-8")
            .body(body);
        let resp = precondition(req, pre)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let etag = etag_of(&resp);
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        match status {
            s if s.is_success() => Ok(Written::Done(etag)),
            StatusCode::PRECONDITION_FAILED => Ok(self.changed()),
            s => {
                self.fail("PUT", &url, s, &text)?;
                Err(self.rejected("PUT", &url, s, &text))
            }
        }
    }

    /// Deletes `href` if `pre` holds.
    pub async fn delete(&self, href: &str, pre: &Precondition) -> Result<Written, CaldavError> {
        let url = self.join(href)?;
        let req = self
            .http
            .delete(url.clone())
            .basic_auth(&self.user, Some(self.password.expose()));
        let resp = precondition(req, pre)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        match status {
            s if s.is_success() => Ok(Written::Done(None)),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(Written::Gone),
            StatusCode::PRECONDITION_FAILED => Ok(self.changed()),
            s => {
                self.fail("DELETE", &url, s, &text)?;
                Err(self.rejected("DELETE", &url, s, &text))
            }
        }
    }

    /// A 412, counted.
    fn changed(&self) -> Written {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        Written::Changed
    }

    async fn dav_request(
        &self,
        method: &str,
        url: &Url,
        depth: &str,
        body: &str,
    ) -> Result<reqwest::Response, CaldavError> {
        let m = Method::from_bytes(method.as_bytes()).expect("a valid method name");
        self.http
            .request(m, url.clone())
            .basic_auth(&self.user, Some(self.password.expose()))
            .header("Depth", depth)
            .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(&e))
    }

    /// The errors every answer may be: refused credentials, a server in trouble.
    fn fail(
        &self,
        method: &str,
        url: &Url,
        status: StatusCode,
        body: &str,
    ) -> Result<(), CaldavError> {
        match status {
            StatusCode::UNAUTHORIZED => Err(CaldavError::Unauthorized {
                url: self.url().to_string(),
                user: self.user.clone(),
            }),
            StatusCode::FORBIDDEN if url == &self.collection => Err(CaldavError::Forbidden {
                url: self.url().to_string(),
                user: self.user.clone(),
            }),
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(CaldavError::Server {
                    method: method.to_string(),
                    url: url.to_string(),
                    status: s.as_u16(),
                    body: excerpt(body),
                })
            }
            _ => Ok(()),
        }
    }

    fn rejected(&self, method: &str, url: &Url, status: StatusCode, body: &str) -> CaldavError {
        CaldavError::Rejected {
            method: method.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            body: excerpt(body),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> CaldavError {
        CaldavError::Unreachable {
            url: self.url().to_string(),
            error: describe(e),
        }
    }

    fn protocol(&self, url: &Url, what: impl std::fmt::Display) -> CaldavError {
        CaldavError::Protocol {
            url: url.to_string(),
            what: what.to_string(),
        }
    }

    fn join(&self, href: &str) -> Result<Url, CaldavError> {
        self.collection.join(href).map_err(|e| CaldavError::BadUrl {
            url: href.to_string(),
            reason: e.to_string(),
        })
    }

    /// An href as a path on the server (some servers send whole URLs).
    fn path_of(&self, href: &str) -> String {
        match Url::parse(href) {
            Ok(u) => u.path().to_string(),
            Err(_) => href.to_string(),
        }
    }

    fn same_path(&self, a: &str, b: &str) -> bool {
        let a = self.path_of(a);
        a.trim_end_matches('/') == b.trim_end_matches('/')
    }
}

/// The HTTP client every CalDAV request goes through: timeouts, user agent, `redirects`.
pub(super) fn http_client(
    redirects: reqwest::redirect::Policy,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("gpubook/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        .build()
}

/// A failed request in words, with every cause.
pub(super) fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        format!("timed out ({msg})")
    } else {
        msg
    }
}

fn precondition(req: reqwest::RequestBuilder, pre: &Precondition) -> reqwest::RequestBuilder {
    match pre {
        Precondition::Absent => req.header(header::IF_NONE_MATCH, "*"),
        Precondition::Unchanged(etag) => req.header(header::IF_MATCH, etag.as_str()),
        Precondition::None => req,
    }
}

fn etag_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The text of `node`'s DAV: child `name`.
pub(super) fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name((DAV, name)))
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// The text of a property in a propstat whose status is 200.
pub(super) fn prop_text(response: roxmltree::Node, name: (&str, &str)) -> Option<String> {
    response
        .children()
        .filter(|c| c.has_tag_name((DAV, "propstat")))
        .filter(|ps| {
            child_text(*ps, "status")
                .map(|s| s.contains(" 200"))
                .unwrap_or(true)
        })
        .flat_map(|ps| ps.descendants())
        .find(|n| n.has_tag_name(name))
        .map(|n| {
            n.descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect::<String>()
        })
        .map(|t| {
            if name.1 == "calendar-data" {
                t
            } else {
                t.trim().to_string()
            }
        })
        .filter(|t| !t.is_empty())
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn excerpt(body: &str) -> String {
    let b = body.trim();
    match b.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &b[..i]),
        None => b.to_string(),
    }
}
