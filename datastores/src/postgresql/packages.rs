//! Installing the Debian packages a node needs: ask dpkg first, install only what is
//! missing, and turn apt's failures into errors that say which package and why.

use crate::ManagerError;
use crate::shell::quote;
use herd_core::faults::FaultCode;
use herd_core::names::PackageSpec;
use std::collections::BTreeMap;

/// Every package must be what the API accepted (`herd_core::names::PackageSpec`:
/// `name`, `name:arch`, `name=version`, `name:arch=version`); checked again here
/// because the manager builds shell commands from them.
pub fn validate(names: &[String]) -> Result<(), ManagerError> {
    for name in names {
        PackageSpec::parse(name)
            .map_err(|e| ManagerError::permanent(FaultCode::PackageInstallFailed, format!("package {name:?} {e}")))?;
    }
    Ok(())
}

/// Prints `<package>\t<version>\t<status>` for every package dpkg knows of; unknown
/// ones are simply absent (dpkg-query then exits 1, which is fine). Pins are not part
/// of the query: dpkg is asked about the name.
pub fn query_command(names: &[String]) -> String {
    let mut cmd = String::from("dpkg-query -W -f='${Package}\\t${Version}\\t${Status}\\n'");
    for n in names {
        let q = PackageSpec::parse(n).map_or_else(|_| n.clone(), |p| p.query_name());
        cmd.push(' ');
        cmd.push_str(&quote(&q));
    }
    cmd.push_str(" 2>/dev/null; true");
    cmd
}

/// The requested packages dpkg does not report as installed, or (when pinned) not
/// installed at the pinned version.
pub fn missing(names: &[String], dpkg_output: &str) -> Vec<String> {
    let installed: BTreeMap<&str, &str> = dpkg_output
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.trim(), f.next()?.trim(), f.next()?.trim()))
        })
        .filter(|(_, _, status)| *status == "install ok installed")
        .map(|(pkg, version, _)| (pkg, version))
        .collect();
    names
        .iter()
        .filter(|n| match PackageSpec::parse(n) {
            Ok(p) => match (installed.get(p.name), p.version) {
                (None, _) => true,
                (Some(have), Some(want)) => *have != want,
                (Some(_), None) => false,
            },
            Err(_) => true,
        })
        .cloned()
        .collect()
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
    ManagerError::permanent(FaultCode::PackageInstallFailed, format!("cannot install package {which}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_validated_as_the_api_validates_them() {
        let ok = ["postgresql-15", "libpq5:amd64", "g++", "etcd-server", "postgresql-15=15.4-1", "libpq5:amd64=15.4-1"];
        assert!(validate(&names(&ok)).is_ok());
        for p in ok {
            assert!(herd_core::names::validate_package(p).is_ok(), "the API accepts {p}");
        }
        for bad in ["", "x", "-o", "Foo", "a b", "a;b", "pkg:", "$(id)", "pkg=", "pkg='1'"] {
            assert_eq!(validate(&names(&[bad])).unwrap_err().code(), "package_install_failed", "{bad:?}");
            assert!(herd_core::names::validate_package(bad).is_err(), "the API refuses {bad:?}");
        }
    }

    #[test]
    fn missing_packages_from_dpkg_output() {
        let out = "patroni\t3.0.2-1\tinstall ok installed\npostgresql-15\t15.19-0\tdeinstall ok config-files\n\
                   libpq5\t15.19-0+deb12u1\tinstall ok installed\n";
        let want = names(&["patroni", "postgresql-15", "etcd-server", "patroni:amd64", "libpq5=15.19-0+deb12u1"]);
        assert_eq!(missing(&want, out), names(&["postgresql-15", "etcd-server"]));
        // Pinned to another version than the installed one: apt must install the pin.
        assert_eq!(missing(&names(&["libpq5=15.4-1", "patroni=3.0.2-1"]), out), names(&["libpq5=15.4-1"]));
        // dpkg is asked about names (with the architecture), never about pins.
        let q = query_command(&names(&["a-b", "libpq5:amd64=15.4-1"]));
        assert!(q.starts_with("dpkg-query -W") && q.contains(" a-b ") && q.contains(" libpq5:amd64 "), "{q}");
        assert!(!q.contains("15.4-1"), "{q}");
        // apt gets the pin.
        assert!(install_command(&names(&["libpq5:amd64=15.4-1"])).ends_with(" libpq5:amd64=15.4-1"));
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
