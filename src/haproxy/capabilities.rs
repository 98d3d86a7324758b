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
    /// `http-request set-timeout connect` in a backend (2.6 to 3.2 refuse the config:
    /// "'set-timeout' rule supports 'server'/'tunnel'/'client' (got 'connect')", measured on
    /// 3.2.26; 3.4.7 cut a connect after the rule's 300 ms): `com.docker.lb.timeout_connect`
    /// is a map entry there, and the backend section's `timeout connect` (a reload) before.
    SetTimeoutConnect,
    /// Lua actions registered for `http-after-res`, which also run on HAProxy's own answers
    /// (403, 429, 401, 503); 2.6.12's `core.register_action` refuses the environment
    /// ("Lua action environment 'http-after-res' is unknown"), so there the header action is
    /// an `http-response` one (responses from tasks only). Measured on 2.6.12, 3.0.11, 3.2.26,
    /// 3.4.7.
    LuaAfterResponse,
    /// `tune.lua.bool-sample-conversion` exists, and a config loading Lua without it draws a
    /// warning (measured on 3.2.26 and 3.4.7; 3.0.11 has neither).
    LuaBoolSampleConversion,
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
            Feature::SetTimeoutConnect => (3, 4),
            Feature::LuaAfterResponse => (3, 0),
            Feature::LuaBoolSampleConversion => (3, 2),
        }
    }

    /// The config line that opens a block only this feature's versions read: HAProxy's
    /// conditional blocks (`.if version_atleast(<x.y>)` ... `.endif`, 2.4+; measured on 2.6.12,
    /// 3.0.11, 3.2.26 and 3.4.7, indented too), so that one config file serves every version
    /// (the first config is written before swarm-lb knows which HAProxy will load it).
    pub fn config_if(self) -> String {
        let (major, minor) = self.first();
        format!(".if version_atleast({major}.{minor})")
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
        (
            (3, 0),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::LuaAfterResponse,
            ],
        ),
        (
            (3, 2),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::LuaAfterResponse,
                Feature::LuaBoolSampleConversion,
            ],
        ),
        (
            (3, 4),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::RuntimeBackends,
                Feature::LargeCliPayload,
                Feature::SetTimeoutConnect,
                Feature::LuaAfterResponse,
                Feature::LuaBoolSampleConversion,
            ],
        ),
        (
            (4, 0),
            &[
                Feature::AddServer,
                Feature::DeferredAddrUpdate,
                Feature::RuntimeBackends,
                Feature::LargeCliPayload,
                Feature::SetTimeoutConnect,
                Feature::LuaAfterResponse,
                Feature::LuaBoolSampleConversion,
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
