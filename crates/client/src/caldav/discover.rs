//! Finding a person's calendars from their server's address alone, as calendar apps do:
//! RFC 6764's `/.well-known/caldav` (redirects followed), then the account's
//! `current-user-principal` (RFC 5397), its `calendar-home-set` (RFC 4791 §6.2.1), and the
//! calendars in that home; and MKCALENDAR (RFC 4791 §5.3.1) for a new one. Each way it can go
//! wrong is its own [`DiscoverError`]: a refused password, a server that is not CalDAV, an
//! account without calendars.

use super::dav::{child_text, describe, excerpt, http_client, prop_text, xml_escape, CALDAV, DAV};
use super::CaldavError;
use crate::secrets::Secret;
use reqwest::{header, redirect, Method, StatusCode, Url};
use serde::Serialize;
use thiserror::Error;

/// Redirects followed from one request (RFC 6764 servers usually need one).
const MAX_REDIRECTS: usize = 5;
/// How many names MKCALENDAR tries (`gpu-bookings`, `gpu-bookings-2`, ...) when taken.
const NAME_TRIES: usize = 5;

/// Why the calendars could not be found or made, each with what the person can do.
#[derive(Debug, Error)]
pub enum DiscoverError {
    /// The address cannot be used.
    #[error("{address} is not a server address: {reason}")]
    BadAddress {
        /// What was given.
        address: String,
        /// Why not.
        reason: String,
    },
    /// The server refused the user name or password (401).
    #[error("the server at {url} refused the user name and password of '{user}' (401 Unauthorized): check both")]
    Unauthorized {
        /// Where.
        url: String,
        /// The account ("" when none was given).
        user: String,
    },
    /// Nothing at the address speaks CalDAV.
    #[error("{url} is not a CalDAV server ({why}): give the address of your calendar server, such as https://cloud.example.org")]
    NotCaldav {
        /// Where it was asked.
        url: String,
        /// What it answered instead.
        why: String,
    },
    /// The account is known but has no place for calendars.
    #[error("the CalDAV server knows '{user}' ({principal}) but names no calendar home for them (calendar-home-set): this account cannot keep calendars there")]
    NoCalendarHome {
        /// The account.
        user: String,
        /// The account's principal URL.
        principal: String,
    },
    /// The server could not be reached or did not answer in time
    /// ([`CaldavError::Unreachable`]), failed ([`CaldavError::Server`]), or refused to make
    /// the calendar ([`CaldavError::Rejected`]).
    #[error(transparent)]
    Http(CaldavError),
}

/// One calendar of the person's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundCalendar {
    /// The collection's URL: what `gpubook caldav sync --url` takes.
    pub url: String,
    /// Its display name (the last part of its path when it has none).
    pub name: String,
    /// Whether it takes events (VEVENT): gpubook can sync only to those.
    pub events: bool,
}

/// What discovery found for one account.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The account's principal URL.
    pub principal: String,
    /// Where its calendars are (and where a new one is made).
    pub home: String,
    /// Its calendars, by name.
    pub calendars: Vec<FoundCalendar>,
}

impl Found {
    /// The calendar called `name` (its display name, any case, or its URL), if any.
    pub fn named(&self, name: &str) -> Option<&FoundCalendar> {
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        self.calendars
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name.trim()) || trim(&c.url) == trim(name))
    }
}

/// An answer after redirects.
struct Answer {
    url: Url,
    status: StatusCode,
    text: String,
}

/// Discovery for one account at one server.
#[derive(Debug)]
pub struct Discovery {
    http: reqwest::Client,
    address: Url,
    user: Option<String>,
    password: Secret,
}

impl Discovery {
    /// Discovery at `address` ("cloud.example.org", "https://host:8443", or any URL on the
    /// server), signing in as `user` when given (servers without accounts take none).
    pub fn new(address: &str, user: Option<&str>, password: Secret) -> Result<Self, DiscoverError> {
        let bad = |reason: &str| DiscoverError::BadAddress {
            address: address.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = address.trim();
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        let full = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let url = Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad("use an http:// or https:// address with a host name"));
        }
        let http = http_client(redirect::Policy::none()).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            http,
            address: url,
            user: user.filter(|u| !u.is_empty()).map(str::to_string),
            password,
        })
    }

    /// The account's principal, calendar home and calendars.
    pub async fn find(&self) -> Result<Found, DiscoverError> {
        let principal = self.principal().await?;
        let home = self.home(&principal).await?;
        let calendars = self.calendars(&home).await?;
        Ok(Found {
            principal: principal.to_string(),
            home: home.to_string(),
            calendars,
        })
    }

    /// Makes a calendar for events called `name` in `found`'s home; its path is made from the
    /// name, with `-2`, `-3`... when a collection already has it.
    pub async fn create(&self, found: &Found, name: &str) -> Result<FoundCalendar, DiscoverError> {
        let home = self.parse(&found.home)?;
        let slug = slug(name);
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set><D:prop>
    <D:displayname>{}</D:displayname>
    <C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
  </D:prop></D:set>
</C:mkcalendar>"#,
            xml_escape(name.trim())
        );
        let mut last = None;
        for n in 1..=NAME_TRIES {
            let path = if n == 1 {
                slug.clone()
            } else {
                format!("{slug}-{n}")
            };
            let url = home
                .join(&format!("{path}/"))
                .map_err(|e| self.bad_href(&path, e))?;
            let a = self.send("MKCALENDAR", url, None, &body).await?;
            match a.status {
                StatusCode::CREATED | StatusCode::OK => {
                    return Ok(FoundCalendar {
                        url: a.url.to_string(),
                        name: name.trim().to_string(),
                        events: true,
                    })
                }
                // Taken: 405 (RFC 4918 §9.3.1), 409 on some servers, 403 with the
                // DAV:resource-must-be-null precondition (RFC 4791 §5.3.1.1, Xandikos).
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::CONFLICT => last = Some(a),
                StatusCode::FORBIDDEN if a.text.contains("resource-must-be-null") => last = Some(a),
                _ => return Err(self.failed("MKCALENDAR", a)),
            }
        }
        Err(self.failed("MKCALENDAR", last.expect("tried at least once")))
    }

    /// The account's principal: from `/.well-known/caldav` (RFC 6764 §5), else from the
    /// address itself (servers that serve CalDAV at their root, or an address with a path).
    async fn principal(&self) -> Result<Url, DiscoverError> {
        let mut starts = Vec::new();
        if self.address.path() != "/" {
            starts.push(self.address.clone());
        }
        starts.push(self.parse("/.well-known/caldav")?);
        if self.address.path() == "/" {
            starts.push(self.address.clone());
        }
        let body = propfind(&[
            (DAV, "current-user-principal"),
            (CALDAV, "calendar-home-set"),
        ]);
        let mut why = String::new();
        for start in starts {
            let a = self.send("PROPFIND", start, Some("0"), &body).await?;
            if a.status != StatusCode::MULTI_STATUS {
                if a.status.is_server_error() && a.status != StatusCode::NOT_IMPLEMENTED {
                    return Err(self.failed("PROPFIND", a));
                }
                why = format!("{} answered {} to PROPFIND", a.url, a.status);
                continue;
            }
            let doc = self.parse_xml(&a)?;
            let href = doc
                .descendants()
                .filter(|n| n.has_tag_name((DAV, "current-user-principal")))
                .find_map(|n| child_text(n, "href"));
            if let Some(h) = href {
                return a.url.join(&h).map_err(|e| self.bad_href(&h, e));
            }
            // A principal that does not say it, but is one: it has a calendar home.
            if doc
                .descendants()
                .any(|n| n.has_tag_name((CALDAV, "calendar-home-set")) && n.has_children())
            {
                return Ok(a.url);
            }
            why = format!("{} names no current-user-principal", a.url);
        }
        Err(DiscoverError::NotCaldav {
            url: self.address.to_string(),
            why,
        })
    }

    /// The principal's calendar home.
    async fn home(&self, principal: &Url) -> Result<Url, DiscoverError> {
        let body = propfind(&[(CALDAV, "calendar-home-set")]);
        let a = self
            .send("PROPFIND", principal.clone(), Some("0"), &body)
            .await?;
        let none = || DiscoverError::NoCalendarHome {
            user: self.user.clone().unwrap_or_default(),
            principal: principal.to_string(),
        };
        if a.status == StatusCode::NOT_FOUND {
            return Err(none());
        }
        if a.status != StatusCode::MULTI_STATUS {
            return Err(self.failed("PROPFIND", a));
        }
        let doc = self.parse_xml(&a)?;
        let href = doc
            .descendants()
            .filter(|n| n.has_tag_name((CALDAV, "calendar-home-set")))
            .find_map(|n| child_text(n, "href"));
        match href {
            Some(h) => a.url.join(&h).map_err(|e| self.bad_href(&h, e)),
            None => Err(none()),
        }
    }

    /// The calendars in `home`, by name.
    async fn calendars(&self, home: &Url) -> Result<Vec<FoundCalendar>, DiscoverError> {
        let body = propfind(&[
            (DAV, "resourcetype"),
            (DAV, "displayname"),
            (CALDAV, "supported-calendar-component-set"),
        ]);
        let a = self
            .send("PROPFIND", home.clone(), Some("1"), &body)
            .await?;
        if a.status != StatusCode::MULTI_STATUS {
            return Err(self.failed("PROPFIND", a));
        }
        let doc = self.parse_xml(&a)?;
        let mut out = Vec::new();
        for r in doc
            .descendants()
            .filter(|n| n.has_tag_name((DAV, "response")))
        {
            let is_calendar = r
                .descendants()
                .filter(|n| n.has_tag_name((DAV, "resourcetype")))
                .any(|t| t.children().any(|c| c.has_tag_name((CALDAV, "calendar"))));
            let Some(href) = child_text(r, "href").filter(|_| is_calendar) else {
                continue;
            };
            let url = a.url.join(&href).map_err(|e| self.bad_href(&href, e))?;
            let comps: Vec<String> = r
                .descendants()
                .filter(|n| n.has_tag_name((CALDAV, "supported-calendar-component-set")))
                .flat_map(|s| s.children())
                .filter(|c| c.has_tag_name((CALDAV, "comp")))
                .filter_map(|c| c.attribute("name").map(str::to_ascii_uppercase))
                .collect();
            let last = url
                .path_segments()
                .and_then(|mut s| s.rfind(|p| !p.is_empty()))
                .unwrap_or_default()
                .to_string();
            out.push(FoundCalendar {
                url: url.to_string(),
                name: prop_text(r, (DAV, "displayname")).unwrap_or(last),
                // No set given: every component is allowed (RFC 4791 §5.2.3).
                events: comps.is_empty() || comps.iter().any(|c| c == "VEVENT"),
            });
        }
        out.sort_by_key(|c| c.name.to_lowercase());
        Ok(out)
    }

    /// Sends `method` with `body`, following redirects with the same method; a 401 becomes
    /// [`DiscoverError::Unauthorized`]. The password goes only to the address's own origin
    /// and to https.
    async fn send(
        &self,
        method: &str,
        mut url: Url,
        depth: Option<&str>,
        body: &str,
    ) -> Result<Answer, DiscoverError> {
        let m = Method::from_bytes(method.as_bytes()).expect("a valid method name");
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .http
                .request(m.clone(), url.clone())
                .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
                .body(body.to_string());
            if let Some(d) = depth {
                req = req.header("Depth", d);
            }
            let trusted = url.origin() == self.address.origin() || url.scheme() == "https";
            if let (Some(user), true) = (&self.user, trusted) {
                req = req.basic_auth(user, Some(self.password.expose()));
            }
            let resp = req.send().await.map_err(|e| unreachable(&url, &e))?;
            let status = resp.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let to = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                let Some(to) = to else {
                    return Err(DiscoverError::NotCaldav {
                        url: url.to_string(),
                        why: format!("a {status} without a usable Location"),
                    });
                };
                if url.scheme() == "https" && to.scheme() != "https" {
                    return Err(DiscoverError::NotCaldav {
                        url: url.to_string(),
                        why: format!("it redirects to {to}, which is not https"),
                    });
                }
                url = to;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(DiscoverError::Unauthorized {
                    url: url.to_string(),
                    user: self.user.clone().unwrap_or_default(),
                });
            }
            let text = resp.text().await.map_err(|e| unreachable(&url, &e))?;
            return Ok(Answer { url, status, text });
        }
        Err(DiscoverError::NotCaldav {
            url: url.to_string(),
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// An answer no step expects: a 4xx to a lookup says the server is not CalDAV; a refused
    /// MKCALENDAR and a 5xx say what the server answered.
    fn failed(&self, method: &str, a: Answer) -> DiscoverError {
        if a.status.is_client_error() && method != "MKCALENDAR" {
            return DiscoverError::NotCaldav {
                url: a.url.to_string(),
                why: format!("it answered {} to {method}", a.status),
            };
        }
        let (method, url, status, body) = (
            method.to_string(),
            a.url.to_string(),
            a.status.as_u16(),
            excerpt(&a.text),
        );
        DiscoverError::Http(if a.status.is_client_error() {
            CaldavError::Rejected {
                method,
                url,
                status,
                body,
            }
        } else {
            CaldavError::Server {
                method,
                url,
                status,
                body,
            }
        })
    }

    fn parse_xml<'a>(&self, a: &'a Answer) -> Result<roxmltree::Document<'a>, DiscoverError> {
        roxmltree::Document::parse(&a.text).map_err(|e| DiscoverError::NotCaldav {
            url: a.url.to_string(),
            why: format!("its answer is not WebDAV XML: {e}"),
        })
    }

    fn parse(&self, path: &str) -> Result<Url, DiscoverError> {
        self.address.join(path).map_err(|e| self.bad_href(path, e))
    }

    fn bad_href(&self, href: &str, e: impl std::fmt::Display) -> DiscoverError {
        DiscoverError::NotCaldav {
            url: self.address.to_string(),
            why: format!("it named an unusable URL {href}: {e}"),
        }
    }
}

fn unreachable(url: &Url, e: &reqwest::Error) -> DiscoverError {
    DiscoverError::Http(CaldavError::Unreachable {
        url: url.to_string(),
        error: describe(e),
    })
}

/// A PROPFIND body asking for `props`.
fn propfind(props: &[(&str, &str)]) -> String {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>"#,
    );
    for (ns, name) in props {
        let prefix = if *ns == DAV { "D" } else { "C" };
        body.push_str(&format!("<{prefix}:{name}/>"));
    }
    body.push_str("</D:prop></D:propfind>");
    body
}

/// A collection's path segment made from a display name: "GPU bookings" → "gpu-bookings".
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "gpubook".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_path_segments() {
        assert_eq!(slug("GPU bookings"), "gpu-bookings");
        assert_eq!(slug("  Über / GPUs!! "), "ber-gpus");
        assert_eq!(slug("日本"), "gpubook");
    }

    #[test]
    fn an_address_without_scheme_is_https() {
        let d = Discovery::new("cloud.example.org", Some("a"), Secret::new("p")).unwrap();
        assert_eq!(d.address.as_str(), "https://cloud.example.org/");
        for bad in ["", "ftp://x", "http://"] {
            assert!(matches!(
                Discovery::new(bad, None, Secret::new("")),
                Err(DiscoverError::BadAddress { .. })
            ));
        }
    }
}
