//! `swarm-lb api-proxy`: a manager's Docker API as the worker edges need it, and nothing more
//! (docker-stack.yml's `api`, on the managers, on an internal overlay).
//!
//! A generic API-filtering proxy switches whole API sections and methods: a worker edge that
//! must deliver its certificates needs `POST /services/create` and `DELETE /services/{id}`, and
//! allowing those there lets its socket create any service (a bind mount of `/` or of the Docker
//! socket: root on any node) and remove any. This filter knows swarm-lb's calls instead:
//!
//! - reads: `GET` of exactly `/version`, `/_ping`, `/info`, `/events`, `/services`, `/tasks`,
//!   `/networks`, `/secrets` (names and IDs; Docker never returns a secret's data) and
//!   `/configs` (`--acme`: the HTTP-01 answers every edge serves are Docker configs; Docker
//!   configs hold no secrets by design, and their data is readable by any task they are
//!   mounted into), with or without the `/v1.NN` prefix; no inspection of a single object, no
//!   other section (so a worker edge answers challenges and serves certificates, but only an
//!   edge with a manager's socket places orders: creating configs and secrets is refused);
//! - `POST /services/create` only when the body is, byte for byte as JSON, the copy job
//!   swarm-lb itself would send ([`CopyJob::spec`] rebuilt from the body's own node, volume and
//!   secrets) with an allowed image (this proxy's own, by default: the stack runs both from
//!   `SWARM_LB_IMAGE`) and an allowed volume (`swarm-lb-secrets`). Anything more (another
//!   mount, a bind mount, a network, an environment variable, a capability, another command)
//!   and it is refused;
//! - `DELETE /services/{id}` only of a service that carries the copy job's role label (looked
//!   up on the engine first; a service's labels can only change through an update, refused);
//! - everything else: 403, logged with method and path (never a body).
//!
//! What a worker edge's socket can still do through it: list services, tasks, networks and
//! secret names; copy any Docker secret into the allowed volume on any node (what delivering
//! certificates needs, since the labels may name any secret); remove copy jobs.
//!
//! The decisions are pure ([`route`], [`check_job`], [`is_copy_job`]); [`serve`] forwards what
//! passes to the engine's socket, streaming replies (the event stream included).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{Service, ServiceSpec};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixStream};
use tracing::{debug, info, warn};

use super::secrets::{CopyJob, ROLE_JOB, ROLE_LABEL};

/// The largest copy-job body read (a job naming a few hundred secrets is well under it).
pub const MAX_BODY: usize = 256 * 1024;

/// Sections swarm-lb reads through a manager's API (docs/deployment.md, "Docker API calls swarm-lb makes").
const READS: [&str; 9] = [
    "version", "_ping", "info", "events", "services", "tasks", "networks", "secrets", "configs",
];

/// What to do with a request, from its method and path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A read swarm-lb makes: forward as is.
    Forward,
    /// `POST /services/create`: forward only if the body passes [`check_job`].
    CreateJob,
    /// `DELETE /services/{id}`: forward only if that service [`is_copy_job`].
    DeleteJob(String),
    /// Refused (403), with the reason logged.
    Refuse(&'static str),
}

/// The path without the API version prefix (`/v1.41/tasks` -> `/tasks`).
fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return &rest[end..];
        }
    }
    path
}

/// Decides from the method and the path (without the query).
pub fn route(method: &Method, path: &str) -> Route {
    // Only plain paths: no escapes, dot segments, empty segments or backslashes that an engine
    // might read otherwise than this filter does.
    if path.contains(['%', '\\']) || path.contains("//") || path.contains("/.") {
        return Route::Refuse("path not plain");
    }
    let path = unversioned(path);
    let Some(rest) = path.strip_prefix('/') else {
        return Route::Refuse("path not absolute");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, [section]) if READS.contains(section) => Route::Forward,
        (&Method::POST, ["services", "create"]) => Route::CreateJob,
        (&Method::DELETE, ["services", id])
            if !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Route::DeleteJob((*id).to_string())
        }
        (&Method::GET, _) => Route::Refuse("not a read swarm-lb makes"),
        _ => Route::Refuse("not a call swarm-lb makes"),
    }
}

/// Which copy jobs may be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPolicy {
    /// Images a job may run (swarm-lb's, as its containers report `Config.Image`).
    pub images: Vec<String>,
    /// Volumes a job may write to.
    pub volumes: Vec<String>,
}

/// Why a copy-job body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobRefusal {
    #[error("the body is not a service spec")]
    NotASpec,
    #[error("image {image:?} is not an allowed copy-job image")]
    Image { image: String },
    #[error("volume {volume:?} is not an allowed secrets volume")]
    Volume { volume: String },
    #[error("the spec is not exactly a copy job")]
    NotACopyJob,
}

/// Accepts `body` only if it is exactly the copy job swarm-lb would create for the node,
/// volume and secrets it names, with an allowed image and volume.
pub fn check_job(body: &[u8], policy: &JobPolicy) -> Result<(), JobRefusal> {
    let sent: serde_json::Value = serde_json::from_slice(body).map_err(|_| JobRefusal::NotASpec)?;
    let spec: ServiceSpec =
        serde_json::from_value(sent.clone()).map_err(|_| JobRefusal::NotASpec)?;
    let task = spec.task_template.as_ref().ok_or(JobRefusal::NotACopyJob)?;
    let container = task
        .container_spec
        .as_ref()
        .ok_or(JobRefusal::NotACopyJob)?;
    let image = container.image.clone().unwrap_or_default();
    if !policy.images.contains(&image) {
        return Err(JobRefusal::Image { image });
    }
    let volume = match container.mounts.as_deref() {
        Some([m]) => m.source.clone().unwrap_or_default(),
        _ => return Err(JobRefusal::NotACopyJob),
    };
    if !policy.volumes.contains(&volume) {
        return Err(JobRefusal::Volume { volume });
    }
    let node_id = task
        .placement
        .as_ref()
        .and_then(|p| p.constraints.as_deref())
        .and_then(|c| match c {
            [one] => one.strip_prefix("node.id=="),
            _ => None,
        })
        .ok_or(JobRefusal::NotACopyJob)?;
    let secrets: BTreeMap<String, String> = container
        .secrets
        .iter()
        .flatten()
        .filter_map(|s| Some((s.secret_name.clone()?, s.secret_id.clone()?)))
        .collect();
    let expected = CopyJob::new(&image, node_id, &volume, secrets).spec();
    let expected = serde_json::to_value(expected).map_err(|_| JobRefusal::NotACopyJob)?;
    if expected != sent {
        return Err(JobRefusal::NotACopyJob);
    }
    Ok(())
}

/// Whether `service_json` (`GET /services/{id}`) is a copy job (its role label).
pub fn is_copy_job(service_json: &[u8]) -> bool {
    serde_json::from_slice::<Service>(service_json)
        .ok()
        .and_then(|s| s.spec?.labels?.get(ROLE_LABEL).cloned())
        .is_some_and(|role| role == ROLE_JOB)
}

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn refuse(code: StatusCode, message: &str) -> Response<Body> {
    let json = serde_json::json!({ "message": message }).to_string();
    let mut r = Response::new(
        Full::new(Bytes::from(json))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = code;
    if let Ok(v) = "application/json".parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Where requests that pass go, and which jobs pass.
#[derive(Debug)]
pub struct Upstream {
    /// The engine's unix socket.
    pub socket: PathBuf,
    pub jobs: JobPolicy,
}

/// Serve until the listener fails. Each connection gets its own task.
pub async fn serve(listener: TcpListener, upstream: Arc<Upstream>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let upstream = upstream.clone();
                async move { Ok::<_, Infallible>(handle(req, &upstream).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "api-proxy connection ended");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, upstream: &Upstream) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // A hijacked connection (attach, exec) is never a call swarm-lb makes.
    if req.headers().contains_key(hyper::header::UPGRADE) {
        info!(%method, %path, reason = "upgrade", "api-proxy refused");
        return refuse(StatusCode::FORBIDDEN, "refused by swarm-lb api-proxy");
    }
    match route(&method, &path) {
        Route::Forward => forward(req.map(|b| b.boxed()), upstream).await,
        Route::Refuse(reason) => {
            info!(%method, %path, reason, "api-proxy refused");
            refuse(StatusCode::FORBIDDEN, "refused by swarm-lb api-proxy")
        }
        Route::CreateJob => {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    info!(%method, %path, reason = "body unreadable or too large", "api-proxy refused");
                    return refuse(StatusCode::FORBIDDEN, "refused by swarm-lb api-proxy");
                }
            };
            if let Err(e) = check_job(&body, &upstream.jobs) {
                info!(%method, %path, reason = %e, "api-proxy refused");
                return refuse(StatusCode::FORBIDDEN, "refused by swarm-lb api-proxy");
            }
            let body = Full::new(body).map_err(|never| match never {}).boxed();
            forward(Request::from_parts(parts, body), upstream).await
        }
        Route::DeleteJob(id) => match lookup(&id, upstream).await {
            Ok(true) => forward(req.map(|b| b.boxed()), upstream).await,
            Ok(false) => {
                info!(%method, %path, reason = "not a copy job", "api-proxy refused");
                refuse(StatusCode::FORBIDDEN, "refused by swarm-lb api-proxy")
            }
            Err(e) => {
                warn!(%method, %path, error = %e, "api-proxy: looking the service up failed");
                refuse(
                    StatusCode::BAD_GATEWAY,
                    "swarm-lb api-proxy: engine not reachable",
                )
            }
        },
    }
}

/// Whether service `id` is a copy job, asked of the engine.
async fn lookup(id: &str, upstream: &Upstream) -> Result<bool, hyper::Error> {
    let req = Request::get(format!("/services/{id}"))
        .header(hyper::header::HOST, "docker")
        .body(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
    let Ok(req) = req else { return Ok(false) };
    let resp = forward(req, upstream).await;
    if resp.status() != StatusCode::OK {
        return Ok(false);
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(is_copy_job(&body))
}

/// Sends `req` to the engine on a connection of its own; the reply's body is streamed back.
async fn forward(req: Request<Body>, upstream: &Upstream) -> Response<Body> {
    let stream = match UnixStream::connect(&upstream.socket).await {
        Ok(s) => s,
        Err(e) => {
            warn!(socket = %upstream.socket.display(), error = %e, "api-proxy: engine not reachable");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "swarm-lb api-proxy: engine not reachable",
            );
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "api-proxy: engine handshake failed");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "swarm-lb api-proxy: engine not reachable",
            );
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "api-proxy upstream connection ended");
        }
    });
    match sender.send_request(req).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => {
            warn!(error = %e, "api-proxy: engine request failed");
            refuse(
                StatusCode::BAD_GATEWAY,
                "swarm-lb api-proxy: engine request failed",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> JobPolicy {
        JobPolicy {
            images: vec!["reg/swarm-lb:1@sha256:abc".into()],
            volumes: vec!["swarm-lb-secrets".into()],
        }
    }

    fn job() -> CopyJob {
        CopyJob::new(
            "reg/swarm-lb:1@sha256:abc",
            "node1",
            "swarm-lb-secrets",
            BTreeMap::from([
                ("web-crt".into(), "id1".into()),
                ("web-key".into(), "id2".into()),
            ]),
        )
    }

    fn body(spec: &ServiceSpec) -> Vec<u8> {
        serde_json::to_vec(spec).expect("json")
    }

    #[test]
    fn only_the_reads_swarm_lb_makes_pass_as_they_are() {
        for p in [
            "/version",
            "/v1.41/version",
            "/_ping",
            "/v1.41/info",
            "/v1.41/events",
            "/v1.41/services",
            "/v1.41/tasks",
            "/v1.41/networks",
            "/v1.41/secrets",
            "/v1.41/configs",
        ] {
            assert_eq!(route(&Method::GET, p), Route::Forward, "{p}");
        }
        for (m, p) in [
            (Method::GET, "/v1.41/secrets/abc"),
            (Method::GET, "/v1.41/services/abc"),
            (Method::GET, "/v1.41/containers/json"),
            (Method::GET, "/v1.41/images/json"),
            (Method::GET, "/v1.41/nodes"),
            (Method::GET, "/v1.41/swarm"),
            (Method::GET, "/v1.41/servicesx"),
            (Method::GET, "/v1.41/tasks/../secrets/x"),
            (Method::GET, "/v1.41//secrets/x"),
            (Method::GET, "/v1.41/%73ecrets/x"),
            (Method::HEAD, "/v1.41/tasks"),
            (Method::POST, "/v1.41/services/abc/update"),
            (Method::POST, "/v1.41/networks/create"),
            (Method::POST, "/v1.41/secrets/create"),
            (Method::POST, "/v1.41/configs/create"),
            (Method::GET, "/v1.41/configs/abc"),
            (Method::POST, "/v1.41/containers/create"),
            (Method::DELETE, "/v1.41/networks/abc"),
            (Method::DELETE, "/v1.41/secrets/abc"),
            (Method::DELETE, "/v1.41/services/a.b"),
            (Method::PUT, "/v1.41/services/create"),
        ] {
            assert!(
                matches!(route(&m, p), Route::Refuse(_)),
                "{m} {p}: {:?}",
                route(&m, p)
            );
        }
        assert_eq!(
            route(&Method::POST, "/v1.41/services/create"),
            Route::CreateJob
        );
        assert_eq!(
            route(&Method::DELETE, "/v1.41/services/x1y2"),
            Route::DeleteJob("x1y2".into())
        );
    }

    #[test]
    fn the_copy_job_swarm_lb_sends_is_accepted() {
        assert_eq!(check_job(&body(&job().spec()), &policy()), Ok(()));
    }

    #[test]
    fn a_copy_job_with_anything_more_or_another_image_or_volume_is_refused() {
        let mut bind = job().spec();
        let c = bind
            .task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .expect("container");
        c.mounts
            .as_mut()
            .expect("mounts")
            .push(bollard::models::Mount {
                target: Some("/host".into()),
                source: Some("/".into()),
                typ: Some(bollard::models::MountType::BIND),
                ..Default::default()
            });
        assert_eq!(
            check_job(&body(&bind), &policy()),
            Err(JobRefusal::NotACopyJob)
        );

        let mut env = job().spec();
        env.task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .expect("container")
            .env = Some(vec!["X=1".into()]);
        assert_eq!(
            check_job(&body(&env), &policy()),
            Err(JobRefusal::NotACopyJob)
        );

        let mut args = job().spec();
        args.task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .expect("container")
            .args = Some(vec!["agent".into()]);
        assert_eq!(
            check_job(&body(&args), &policy()),
            Err(JobRefusal::NotACopyJob)
        );

        // A field the spec type does not know is still compared (the raw JSON is).
        let mut raw: serde_json::Value = serde_json::to_value(job().spec()).expect("json");
        raw["TaskTemplate"]["ContainerSpec"]["Privileged"] = serde_json::json!(true);
        assert_eq!(
            check_job(raw.to_string().as_bytes(), &policy()),
            Err(JobRefusal::NotACopyJob)
        );

        let other = CopyJob::new("busybox", "node1", "swarm-lb-secrets", BTreeMap::new());
        assert!(matches!(
            check_job(&body(&other.spec()), &policy()),
            Err(JobRefusal::Image { .. })
        ));
        let other = CopyJob::new(
            "reg/swarm-lb:1@sha256:abc",
            "node1",
            "db-data",
            BTreeMap::new(),
        );
        assert!(matches!(
            check_job(&body(&other.spec()), &policy()),
            Err(JobRefusal::Volume { .. })
        ));
        assert_eq!(check_job(b"{", &policy()), Err(JobRefusal::NotASpec));
        assert_eq!(check_job(b"[]", &policy()), Err(JobRefusal::NotASpec));
    }

    #[test]
    fn only_a_service_with_the_copy_job_role_may_be_removed() {
        let job = serde_json::json!({"ID": "x", "Spec": serde_json::to_value(job().spec()).expect("json")});
        assert!(is_copy_job(job.to_string().as_bytes()));
        let other = serde_json::json!({"ID": "y", "Spec": {"Name": "db", "Labels": {"a": "b"}}});
        assert!(!is_copy_job(other.to_string().as_bytes()));
        assert!(!is_copy_job(b"garbage"));
    }
}
