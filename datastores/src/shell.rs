//! POSIX shell quoting. Every command Herd sends over SSH is built from parts passed
//! through [`quote`] (or [`join`]), so no value — a path under a user-chosen root, a
//! package name, a cluster name — can ever be read by the remote shell as syntax.

/// Quotes `s` as one word for a POSIX shell.
///
/// Words made only of characters no shell treats specially are returned as they are
/// (readable logs); everything else is wrapped in single quotes, inside which the
/// shell interprets nothing. A single quote itself cannot appear inside single
/// quotes, so it is written as `'\''`: close, escaped quote, reopen.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b'=' | b'@' | b'+' | b',')
        });
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes every word and joins them with spaces: a simple command line.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::{join, quote};
    use std::process::Command;

    /// What `sh` makes of a quoted word: it must be exactly the original string.
    fn roundtrip(s: &str) -> String {
        let out =
            Command::new("/bin/sh").arg("-c").arg(format!("printf '%s' {}", quote(s))).output().expect("run /bin/sh");
        assert!(out.status.success(), "sh failed for {s:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(quote("/var/lib/postgresql/15/main"), "/var/lib/postgresql/15/main");
        assert_eq!(quote("postgresql-15"), "postgresql-15");
        assert_eq!(quote("DPkg::Lock::Timeout=300"), "DPkg::Lock::Timeout=300");
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("*"), "'*'");
    }

    #[test]
    fn the_shell_reads_back_exactly_the_input() {
        for s in [
            "",
            "plain",
            "two words",
            "it's",
            "''",
            "'",
            "\"double\"",
            "$(touch /tmp/herd-quote-pwned)",
            "`id`",
            "$HOME ${PATH}",
            "semi; rm -rf /",
            "a && b || c | d > e < f",
            "line one\nline two\n",
            "tab\there",
            "back\\slash\\",
            "glob * ? [a-z]",
            "!bang #hash %pct ~tilde",
            "unicode ✓ é",
            "-n",
        ] {
            assert_eq!(roundtrip(s), s, "quote({s:?}) = {}", quote(s));
        }
        assert!(!std::path::Path::new("/tmp/herd-quote-pwned").exists());
    }

    #[test]
    fn join_quotes_each_word() {
        assert_eq!(join(&["echo", "a b", "it's"]), r"echo 'a b' 'it'\''s'");
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for w in {}; do printf '<%s>' \"$w\"; done", join(&["x y", "", "$(z)", "n\nl"])))
            .output()
            .expect("run /bin/sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "<x y><><$(z)><n\nl>");
    }
}
