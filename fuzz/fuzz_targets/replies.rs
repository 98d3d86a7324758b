//! Every parser of HAProxy's replies (Runtime API and master CLI) on any bytes: an error is
//! fine, a panic or a hang is not. The framing of a reply stream too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_lb::haproxy::codec::{self, frame::Replies};
use swarm_lb::haproxy::{Command, DefaultsName, MapPath, Query};
use swarm_lb::model::{BackendName, BackendOptions, MapKey, MapValue, ServerName};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rows = codec::parse_servers_state(&text);
    let map = codec::parse_show_map(&text);
    if let (Ok(rows), Ok(map)) = (&rows, &map) {
        let _ = codec::proxy_state(rows, map);
    }
    let _ = codec::parse_show_info(&text);
    if let Ok(procs) = codec::parse_show_proc(&text) {
        let _ = procs.serving_worker();
    }
    let _ = codec::parse_reload_reply(&text);
    let web = BackendName::parse("web").expect("name");
    let map_path = MapPath::new("/tmp/hosts.map").expect("path");
    let _ = codec::check_query_reply(&Query::ShowInfo, &text);
    for cmd in [
        Command::AddMap {
            map: map_path.clone(),
            key: MapKey::parse("a.example/").expect("key"),
            value: MapValue::backend(&web, 0),
        },
        Command::DelMap {
            map: map_path,
            key: MapKey::parse("a.example/").expect("key"),
        },
        // 3.4's backend commands; `del server`/`del backend` read the reply's last line.
        Command::AddBackend {
            backend: web.clone(),
            defaults: DefaultsName::for_options(&BackendOptions::default()).expect("named"),
        },
        Command::PublishBackend {
            backend: web.clone(),
        },
        Command::WaitServerRemovable {
            backend: web.clone(),
            server: ServerName::slot(1),
            timeout_ms: 500,
        },
        Command::DelServer {
            backend: web.clone(),
            server: ServerName::slot(1),
        },
        Command::DelBackend {
            backend: web.clone(),
        },
    ] {
        let _ = codec::check_reply(&cmd, &text);
    }
    let mut frames = Replies::new();
    frames.buffer().extend_from_slice(data);
    while frames.next_reply().is_some() {}
});
