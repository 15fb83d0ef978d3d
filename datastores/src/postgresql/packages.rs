//! Installing the Debian packages a node needs: ask dpkg first, install only what is
//! missing, and turn apt's failures into errors that say which package and why.

use crate::ManagerError;
use crate::shell::quote;
use std::collections::BTreeSet;

/// Debian package names (policy §5.6.1), optionally with an architecture.
pub fn validate(names: &[String]) -> Result<(), ManagerError> {
    for name in names {
        let (pkg, arch) = match name.split_once(':') {
            Some((p, a)) => (p, Some(a)),
            None => (name.as_str(), None),
        };
        let pkg_ok = pkg.len() >= 2
            && pkg.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && pkg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
        let arch_ok = arch.is_none_or(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !pkg_ok || !arch_ok {
            return Err(ManagerError::permanent(
                "package_install_failed",
                format!("{name:?} is not a valid Debian package name"),
            ));
        }
    }
    Ok(())
}

/// Prints `<package>\t<status>` for every package dpkg knows of; unknown ones are
/// simply absent (dpkg-query then exits 1, which is fine).
pub fn query_command(names: &[String]) -> String {
    let mut cmd = String::from("dpkg-query -W -f='${Package}\\t${Status}\\n'");
    for n in names {
        cmd.push(' ');
        cmd.push_str(&quote(n));
    }
    cmd.push_str(" 2>/dev/null; true");
    cmd
}

/// The requested packages dpkg does not report as installed.
pub fn missing(names: &[String], dpkg_output: &str) -> Vec<String> {
    let installed: BTreeSet<&str> = dpkg_output
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(pkg, _)| pkg.trim())
        .collect();
    names.iter().filter(|n| !installed.contains(n.split_once(':').map_or(n.as_str(), |(p, _)| p))).cloned().collect()
}

/// Whether apt has package lists at all (a fresh cloud image may not): only then is
/// `apt-get update` worth its time. Exit 0 means lists are present.
pub const LISTS_PRESENT: &str = "ls /var/lib/apt/lists/ 2>/dev/null | grep -q _Packages";
pub const UPDATE_COMMAND: &str = "DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update";

pub fn install_command(missing: &[String]) -> String {
    // Loopback hosts share this machine's dpkg, so parallel prepares queue on its
    // lock instead of failing; existing config files are always kept.
    let mut cmd = String::from(
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 \
         -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
         install --no-install-recommends",
    );
    for n in missing {
        cmd.push(' ');
        cmd.push_str(&quote(n));
    }
    cmd
}

/// Maps a failed `apt-get install` to an error: lock and network trouble may pass,
/// anything else (an unknown package above all) will not.
pub fn install_error(missing: &[String], stdout: &str, stderr: &str) -> ManagerError {
    let errors: Vec<&str> =
        stderr.lines().chain(stdout.lines()).map(str::trim).filter(|l| l.starts_with("E:")).collect();
    let last = errors.last().copied().unwrap_or_else(|| {
        stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("apt-get failed without a message")
    });
    let unknown: Vec<&str> =
        errors.iter().filter_map(|l| l.strip_prefix("E: Unable to locate package ")).map(str::trim).collect();
    let transient =
        ["Could not get lock", "Temporary failure", "Failed to fetch", "Could not resolve", "Unable to fetch"];
    if unknown.is_empty() && errors.iter().any(|l| transient.iter().any(|t| l.contains(t))) {
        return ManagerError::Transient(format!("installing {} failed: {last}", missing.join(", ")));
    }
    let which = if unknown.is_empty() { missing.join(", ") } else { unknown.join(", ") };
    ManagerError::permanent("package_install_failed", format!("cannot install package {which}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_validated() {
        assert!(validate(&names(&["postgresql-15", "libpq5:amd64", "g++", "etcd-server"])).is_ok());
        for bad in ["", "x", "-o", "Foo", "a b", "a;b", "pkg:", "$(id)"] {
            assert_eq!(validate(&names(&[bad])).unwrap_err().code(), "package_install_failed", "{bad:?}");
        }
    }

    #[test]
    fn missing_packages_from_dpkg_output() {
        let out = "patroni\tinstall ok installed\npostgresql-15\tdeinstall ok config-files\n";
        let want = names(&["patroni", "postgresql-15", "etcd-server", "patroni:amd64"]);
        assert_eq!(missing(&want, out), names(&["postgresql-15", "etcd-server"]));
        assert!(query_command(&names(&["a-b", "c"])).starts_with("dpkg-query -W"));
    }

    #[test]
    fn apt_failures_are_classified() {
        let e = install_error(
            &names(&["nope-pkg"]),
            "Reading package lists...\n",
            "E: Unable to locate package nope-pkg\n",
        );
        assert_eq!(e.code(), "package_install_failed");
        assert!(e.to_string().contains("nope-pkg") && e.to_string().contains("Unable to locate"), "{e}");
        let e = install_error(
            &names(&["x"]),
            "",
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1\n",
        );
        assert!(matches!(e, ManagerError::Transient(_)), "{e}");
        let e = install_error(&names(&["x"]), "", "dpkg: error processing\n");
        assert_eq!(e.code(), "package_install_failed");
    }
}
