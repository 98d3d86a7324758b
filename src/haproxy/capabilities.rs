//! What each HAProxy line can do, in one table: every version decision in swarm-lb reads
//! [`Capabilities`], built from `show info`'s `Version`. A new HAProxy line (or a feature
//! found to start at another version) is one row here, plus its fixtures.
//!
//! Sources: HAProxy's own `doc/management.txt` at each tag, and what was measured on these
//! machines against Debian's 2.6.12, 3.0.11, 3.2.26 and 3.4.7 (see `shared/HAPROXY.md`).

use super::codec::Version;

/// A Runtime API behaviour that depends on the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// `add server` is GA (2.4/2.5 need `experimental-mode on`): backends grow without a
    /// reload.
    AddServer,
    /// `set server ... addr` is answered before the new address is visible to `show servers
    /// state` (measured on 3.0.11, 3.2.26, 3.4.7): the client waits until it is listed.
    DeferredAddrUpdate,
    /// `add backend ... from <defaults>`, `publish`/`unpublish backend`, `del backend`:
    /// backends created and deleted at runtime.
    RuntimeBackends,
    /// A CLI payload may reach `tune.cli.max-payload-size` (128 KiB by default) instead of
    /// the whole command fitting `tune.bufsize - tune.maxrewrite` (15,360 bytes).
    LargeCliPayload,
}

impl Feature {
    /// The first `(major, minor)` line that has it. A `match`, so that a new feature cannot
    /// be added without its row.
    pub const fn first(self) -> (u16, u16) {
        match self {
            Feature::AddServer => (2, 6),
            Feature::DeferredAddrUpdate => (3, 0),
            Feature::RuntimeBackends => (3, 4),
            Feature::LargeCliPayload => (3, 4),
        }
    }
}

/// What one running HAProxy can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub version: Version,
}

impl Capabilities {
    pub fn of(version: Version) -> Self {
        Capabilities { version }
    }

    /// Whether this version has `feature`.
    pub fn has(&self, feature: Feature) -> bool {
        (self.version.major, self.version.minor) >= feature.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u16, minor: u16) -> Capabilities {
        Capabilities::of(Version {
            major,
            minor,
            patch: 0,
        })
    }

    /// What was measured on each line of the matrix (and the lines around it): the features
    /// it has. A feature's row is checked on every line here once it is named on one.
    const MEASURED: &[((u16, u16), &[Feature])] = &[
        ((2, 4), &[]),
        ((2, 6), &[Feature::AddServer]),
        ((3, 0), &[Feature::AddServer, Feature::DeferredAddrUpdate]),
        ((3, 2), &[Feature::AddServer, Feature::DeferredAddrUpdate]),
        (
            (3, 4),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::RuntimeBackends,
                Feature::LargeCliPayload,
            ],
        ),
        (
            (4, 0),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::RuntimeBackends,
                Feature::LargeCliPayload,
            ],
        ),
    ];

    #[test]
    fn each_line_of_the_matrix_has_what_was_measured_on_it() {
        let named: Vec<Feature> = MEASURED
            .iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        for &((major, minor), has) in MEASURED {
            for &f in &named {
                assert_eq!(
                    v(major, minor).has(f),
                    has.contains(&f),
                    "{major}.{minor}: {f:?}"
                );
            }
        }
    }
}
