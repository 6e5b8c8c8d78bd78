//! Names for servers the person adds.

/// A name for a server added as `spec`, usable in servers.toml (letters, digits, '-', '_',
/// '.') and unlike every name in `taken`: the SSH host ("alice@lab1:2222" → "lab1"), or the
/// socket's file name ("unix:/run/x/lab2.sock" → "lab2"), with "-2", "-3"... if needed.
pub fn name_for(spec: &str, taken: &[String]) -> String {
    let spec = spec.trim();
    let base = if let Some(path) = spec.strip_prefix("unix:") {
        std::path::Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        let rest = spec.strip_prefix("ssh://").unwrap_or(spec);
        let rest = rest.trim_end_matches('/');
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = if let Some(h) = host.strip_prefix('[') {
            h.split(']').next().unwrap_or(h)
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        host.to_string()
    };
    let mut base: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if base.is_empty() || ["local", "any", "all"].contains(&base.as_str()) {
        base = format!("server-{base}");
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.iter().any(|t| t == &name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::name_for;

    #[test]
    fn names_for_added_servers() {
        let none: Vec<String> = vec![];
        assert_eq!(name_for("lab1", &none), "lab1");
        assert_eq!(
            name_for("alice@lab1.example.org:2222", &none),
            "lab1.example.org"
        );
        assert_eq!(name_for("ssh://bob@gpu7/", &none), "gpu7");
        assert_eq!(name_for("alice@[::1]:22", &none), "--1");
        assert_eq!(name_for("unix:/run/x/lab2.sock", &none), "lab2");
        assert_eq!(
            name_for("lab1", &["lab1".into(), "lab1-2".into()]),
            "lab1-3"
        );
        assert_eq!(name_for("unix:/tmp/local.sock", &none), "server-local");
    }
}
