//! Which site a request must be addressed to: the `Host` of every request and the `Origin` of
//! every form post must name this server's public address (scheme, host and port), so that
//! neither a cross-site form nor a DNS-rebinding page can talk to it through a victim's browser.

use std::net::SocketAddr;

/// The scheme and the `host:port` names under which this server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteOrigin {
    scheme: &'static str,
    /// Lower-case `host:port`, the port always written out.
    authorities: Vec<String>,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `host[:port]` as lower-case `host:port` (default port for `scheme`), or `None` when it is not
/// a plain authority (user info, a path, an empty host, a bad port).
fn normalise(authority: &str, scheme: &str) -> Option<String> {
    let authority = authority.trim().to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
        return None;
    }
    // An IPv6 literal keeps its brackets: [::1]:8080.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && (!h.contains(':') || h.ends_with(']')) => {
            (h.to_string(), p.parse::<u16>().ok()?)
        }
        _ => (authority.clone(), default_port(scheme)),
    };
    if host.is_empty() {
        return None;
    }
    Some(format!("{host}:{port}"))
}

impl SiteOrigin {
    /// From `http.public_url` when set; otherwise the bound address with the scheme `tls` implies
    /// (and `localhost` beside a loopback address).
    pub fn new(public_url: Option<&str>, tls: bool, bound: SocketAddr) -> Result<Self, String> {
        match public_url {
            Some(url) => Self::parse(url),
            None => {
                let scheme = if tls { "https" } else { "http" };
                let mut authorities = vec![normalise(&bound.to_string(), scheme)
                    .ok_or_else(|| format!("cannot name {bound} as a host"))?];
                if bound.ip().is_loopback() {
                    authorities.push(format!("localhost:{}", bound.port()));
                }
                Ok(Self {
                    scheme,
                    authorities,
                })
            }
        }
    }

    /// A public URL: `http(s)://host[:port]`, optionally with a trailing `/`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || format!("http.public_url {url:?} must be http(s)://host[:port]");
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => "http",
            "https" => "https",
            _ => return Err(bad()),
        };
        let authority =
            normalise(rest.strip_suffix('/').unwrap_or(rest), scheme).ok_or_else(bad)?;
        Ok(Self {
            scheme,
            authorities: vec![authority],
        })
    }

    /// Whether a `Host` header names this server.
    pub fn host_ok(&self, host: &str) -> bool {
        normalise(host, self.scheme).is_some_and(|a| self.authorities.contains(&a))
    }

    /// Whether an `Origin` header is this site: same scheme, host and port.
    pub fn origin_ok(&self, origin: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false; // `null` and anything else that is not an origin
        };
        scheme.eq_ignore_ascii_case(self.scheme)
            && normalise(authority, self.scheme).is_some_and(|a| self.authorities.contains(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let local = SiteOrigin::new(None, false, "127.0.0.1:8080".parse().unwrap()).unwrap();
        assert!(local.origin_ok("http://127.0.0.1:8080"));
        assert!(local.origin_ok("http://localhost:8080"));
        assert!(!local.origin_ok("https://127.0.0.1:8080"), "scheme differs");
        assert!(!local.origin_ok("http://127.0.0.1:8081"), "port differs");
        assert!(!local.origin_ok("http://evil.example"));
        assert!(!local.origin_ok("null"));
        assert!(local.host_ok("127.0.0.1:8080") && local.host_ok("LOCALHOST:8080"));
        assert!(!local.host_ok("evil.example") && !local.host_ok("evil.example:8080"));

        let public = SiteOrigin::parse("https://nachtwacht.example.nl/").unwrap();
        assert!(public.origin_ok("https://nachtwacht.example.nl"));
        assert!(public.origin_ok("https://nachtwacht.example.nl:443"));
        assert!(!public.origin_ok("http://nachtwacht.example.nl"));
        assert!(public.host_ok("nachtwacht.example.nl"));
        assert!(!public.host_ok("nachtwacht.example.nl.evil.example"));
        assert!(!public.host_ok("user@nachtwacht.example.nl"));

        let v6 = SiteOrigin::new(None, true, "[::1]:8443".parse().unwrap()).unwrap();
        assert!(v6.origin_ok("https://[::1]:8443") && v6.host_ok("[::1]:8443"));
        assert!(SiteOrigin::parse("ftp://x").is_err());
    }
}
