//! Address rules for user-given URLs (callbacks, image and video URLs, upstream
//! links): one URL rule, `check_user_url`, shared by create validation and the
//! gateway's guarded client, and which IP addresses are never to be contacted.
//! Pure; the guarded client applies `is_forbidden_ip` to every resolved address.
//! Also the shape of vidgate's own file links, so that parse and storage agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True for loopback, private, link-local, CGNAT, multicast, unspecified,
/// documentation, benchmarking and other reserved addresses, v4 and v6,
/// including v4 addresses embedded in v6 (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                   // this network
        || a == 10                           // private
        || a == 127                          // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 169 && b == 254)            // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)    // documentation
        || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast
        || (a == 192 && b == 168)            // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113)  // documentation
        || a >= 224 // multicast, reserved, broadcast
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
    if s[0..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return forbidden_v4(v4_from(s[6], s[7]));
    }
    // NAT64 64:ff9b::/96 (and the local-use 64:ff9b:1::/48).
    if s[0] == 0x64 && s[1] == 0xff9b {
        return s[2] == 1 || forbidden_v4(v4_from(s[6], s[7]));
    }
    // 6to4 2002::/16 carries a v4 address in the next 32 bits.
    if s[0] == 0x2002 {
        return forbidden_v4(v4_from(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00        // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0)      // Teredo
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x2001 && matches!(s[1] & 0xfff0, 0x0010 | 0x0020)) // ORCHID
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
}

fn v4_from(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The IP address a URL names literally (the URL parser has already turned forms
/// like `2130706433`, `0x7f.1` or `0177.0.0.1` into a normal address).
pub fn url_literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Host names that always mean this machine, refused without asking DNS
/// (`localhost` and `*.localhost`, RFC 6761).
pub fn is_local_host_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Why a user-given URL is refused before any network access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("The URL is not valid.")]
    Invalid,
    #[error("Only https:// URLs are accepted.")]
    Scheme,
    #[error("The URL has no host.")]
    NoHost,
    #[error("The URL must not carry credentials.")]
    Credentials,
    #[error("The URL points to a private, loopback or reserved address.")]
    Forbidden,
}

/// The one rule for a URL a user gives us: `https://` (or `http://` when private
/// fetches are allowed, in development), a host, no credentials, and no literal
/// address or local host name that `is_forbidden_ip`/`is_local_host_name` refuse.
/// Names are resolved later by the caller, which checks every address again.
pub fn check_user_url(raw: &str, allow_private: bool) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw).map_err(|_| UrlError::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlError::Scheme),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if !allow_private
        && (url_literal_ip(&url).is_some_and(is_forbidden_ip)
            || matches!(url.host(), Some(url::Host::Domain(d)) if is_local_host_name(d)))
    {
        return Err(UrlError::Forbidden);
    }
    Ok(url)
}

/// Longest id a stored file may have.
pub const MAX_FILE_ID_CHARS: usize = 64;

/// A stored file's id: 1 to 64 of `[A-Za-z0-9_-]`, so it is always a safe file
/// name. The gateway's blob store uses this same rule for the ids it accepts.
pub fn is_valid_file_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_FILE_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The file id of a URL shaped like a vidgate file link (`/files/{id}` with `exp`
/// and `sig` in the query), whatever its host; whether the link is genuine is for
/// the server's signature check.
pub fn file_link_id(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let id = url.path().strip_prefix("/files/")?;
    let query = url.query().unwrap_or("");
    let has = |key: &str| query.split('&').any(|p| p.split_once('=').is_some_and(|(k, _)| k == key));
    (is_valid_file_id(id) && has("exp") && has("sig")).then(|| id.to_owned())
}

/// True when `raw` has the shape of a vidgate file link (see `file_link_id`).
pub fn is_file_link(raw: &str) -> bool {
    file_link_id(raw).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_url_rule_refuses_each_bad_shape_with_its_reason() {
        for (raw, private, want) in [
            ("https://cdn.example.com/a.png", false, Ok(())),
            ("http://cdn.example.com/a.png", false, Err(UrlError::Scheme)),
            ("http://127.0.0.1:9000/a.png", true, Ok(())),
            ("ftp://cdn.example.com/a.png", true, Err(UrlError::Scheme)),
            ("not a url", false, Err(UrlError::Invalid)),
            ("https://u:p@cdn.example.com/", false, Err(UrlError::Credentials)),
            ("https://u@cdn.example.com/", false, Err(UrlError::Credentials)),
            ("https://10.0.0.1/a.png", false, Err(UrlError::Forbidden)),
            ("https://0x7f.1/a.png", false, Err(UrlError::Forbidden)),
            ("https://[::ffff:10.0.0.1]/a.png", false, Err(UrlError::Forbidden)),
            ("https://api.localhost/a.png", false, Err(UrlError::Forbidden)),
            ("https://api.localhost/a.png", true, Ok(())),
            ("file:///etc/passwd", true, Err(UrlError::Scheme)),
        ] {
            assert_eq!(check_user_url(raw, private).map(|_| ()), want, "{raw}");
        }
    }

    #[test]
    fn file_link_ids_follow_the_blob_store_rule() {
        for id in ["file-abc", "A_b-9", &"x".repeat(64)] {
            assert!(is_valid_file_id(id), "{id}");
        }
        for id in ["", "a.b", "a/b", "..", "é", &"x".repeat(65)] {
            assert!(!is_valid_file_id(id), "{id}");
        }
        assert_eq!(file_link_id("https://vg.example/files/file-Ab_9-x?exp=99&sig=xyz").as_deref(), Some("file-Ab_9-x"));
        assert_eq!(file_link_id("http://127.0.0.1:8080/files/abc?sig=1&exp=2").as_deref(), Some("abc"));
        for bad in [
            "https://vg.example/files/file-abc?exp=99",
            "https://vg.example/files/file-abc?sig=1",
            "https://vg.example/files/file-abc",
            "https://vg.example/files/a/b?exp=1&sig=2",
            "http://127.0.0.1/files/file-../x?exp=1&sig=2",
            "https://vg.example/other/file-abc?exp=1&sig=2",
            "https://vg.example/files/file-abc?expires=1&signature=2",
        ] {
            assert!(!is_file_link(bad), "{bad}");
        }
    }

    fn forbidden(s: &str) -> bool {
        s.parse::<IpAddr>().map(is_forbidden_ip).unwrap_or(false)
    }

    #[test]
    fn refuses_every_reserved_range() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "2001::1",
            "0.1.2.3",
            "10.255.255.255",
            "172.20.1.1",
            "192.168.255.255",
            "100.100.100.200",
            "169.254.0.1",
            "192.0.0.170",
            "192.0.2.255",
            "198.19.255.255",
            "198.51.100.255",
            "203.0.113.0",
            "233.252.0.1",
            "255.0.0.1",
            "::ffff:0.0.0.0",
            "::ffff:192.168.1.1",
            "::ffff:100.64.0.1",
            "::10.0.0.1",
            "64:ff9b::c0a8:101",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
            "fdff:ffff::1",
            "febf::1",
            "fee0::1",
            "ff0e::1",
            "2001:db8:ffff::1",
            "2001:0:4136:e378::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
        ] {
            assert!(forbidden(s), "{s} should be forbidden");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for s in [
            "1.0.0.1",
            "9.9.9.9",
            "11.0.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.0.1",
            "172.15.255.255",
            "192.0.1.1",
            "192.167.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "203.0.114.1",
            "223.255.255.255",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "2001:db9::1",
            "2001:1::1",
            "fbff::1",
            "2003::1",
        ] {
            assert!(!forbidden(s), "{s} should be allowed");
        }
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!forbidden(s), "{s} should be allowed");
        }
    }

    #[test]
    fn reads_literal_hosts_in_any_notation() {
        for (u, ip) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://017700000001/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
        ] {
            let url = url::Url::parse(u).map_err(|e| e.to_string());
            assert_eq!(url.map(|u| url_literal_ip(&u)), Ok(ip.parse().ok()), "{u}");
        }
        assert_eq!(url::Url::parse("https://example.com/").ok().and_then(|u| url_literal_ip(&u)), None);
    }

    #[test]
    fn obfuscated_loopback_urls_are_forbidden() {
        for u in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://127.1/",
            "http://0/",
            "http://[::]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        ] {
            let ip = url::Url::parse(u).ok().and_then(|u| url_literal_ip(&u));
            assert!(ip.is_some_and(is_forbidden_ip), "{u} -> {ip:?}");
        }
    }

    #[test]
    fn localhost_names_are_local() {
        for h in ["localhost", "LOCALHOST", "localhost.", "api.localhost"] {
            assert!(is_local_host_name(h), "{h}");
        }
        for h in ["localhost.example.com", "mylocalhost", "example.com"] {
            assert!(!is_local_host_name(h), "{h}");
        }
    }
}
