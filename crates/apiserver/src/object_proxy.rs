//! `pods/{name}[:port]/proxy/{path}` and `services/{name}[:port]/proxy/{path}`: the API server
//! forwards the request over plain HTTP to the pod's IP, or to a ready endpoint of the
//! Service, and streams the answer back — what `kubectl proxy` users reach at
//! `http://localhost:8001/api/v1/namespaces/default/pods/$POD_NAME:8080/proxy/`, and the
//! URLs `kubectl cluster-info` prints. The names may carry a scheme (`http:web:8080`); only
//! plain HTTP is proxied.

use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use serde_json::Value;
use timonier_api::resources::ResourceDef;

use crate::error::{ApiError, ApiResult};
use crate::server::{relay, Body};
use crate::state::ApiState;

/// Headers that belong to one connection, not to the proxied request.
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

/// `[scheme:]name[:port]` of a proxy path.
fn split_name(name: &str) -> ApiResult<(&str, &str)> {
    let parts: Vec<&str> = name.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] => (*s, *n, *p),
        _ => return Err(ApiError::bad_request(format!("invalid proxy name {name:?}"))),
    };
    if !scheme.is_empty() && scheme != "http" {
        return Err(ApiError::bad_request(format!("only http is proxied here, not {scheme}")));
    }
    Ok((name, port))
}

/// Where a pod's proxy goes: its IP and the port asked (a number or a container port's name;
/// 80 when none, as upstream).
fn pod_target(pod: &Value, name: &str, port: &str) -> ApiResult<String> {
    let ip = pod.pointer("/status/podIP").and_then(Value::as_str).filter(|ip| !ip.is_empty()).ok_or_else(|| ApiError::unavailable(format!("pod {name} has no IP address yet")))?;
    let port = match port {
        "" => 80,
        p => match p.parse::<u16>() {
            Ok(n) => n,
            Err(_) => pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .find(|cp| cp["name"] == p)
                .and_then(|cp| cp["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| ApiError::unavailable(format!("pod {name} has no port named {p:?}")))?,
        },
    };
    Ok(format!("{ip}:{port}"))
}

/// Where a Service's proxy goes: a ready address of its Endpoints, on the endpoint port of
/// the service port asked (by name or number; the first one when none).
fn service_target(svc: &Value, endpoints: &Value, name: &str, port: &str) -> ApiResult<String> {
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let sp = match port {
        "" => ports.first().cloned(),
        p => ports.iter().find(|sp| sp["name"] == p || sp["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(p)).cloned(),
    }
    .ok_or_else(|| ApiError::unavailable(format!("no service port {port:?} found for service \"{name}\"")))?;
    let port_name = sp["name"].as_str().unwrap_or("");
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let Some(ep_port) = subset["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or("") == port_name).and_then(|p| p["port"].as_u64()) else {
            continue;
        };
        if let Some(ip) = subset["addresses"].as_array().and_then(|a| a.first()).and_then(|a| a["ip"].as_str()) {
            return Ok(format!("{ip}:{ep_port}"));
        }
    }
    Err(ApiError::unavailable(format!("no endpoints available for service \"{name}\"")))
}

/// Forwards `req` to the pod or Service `name` (`def` says which) at `rest`.
pub async fn proxy(state: Arc<ApiState>, req: Request<hyper::body::Incoming>, def: &Arc<ResourceDef>, ns: &str, name: &str, rest: &str) -> ApiResult<Response<Body>> {
    let (object, port) = split_name(name)?;
    let obj = state.get(def, ns, object).await?;
    let obj: &Value = &obj;
    let target = match def.plural.as_str() {
        "pods" => pod_target(obj, object, port)?,
        "services" => {
            let ep_def = state.def("", "v1", "endpoints")?;
            let endpoints = state.get(&ep_def, ns, object).await.ok();
            service_target(obj, endpoints.as_deref().unwrap_or(&Value::Null), object, port)?
        }
        _ => return Err(ApiError::path_not_found()),
    };
    let path = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let unreachable = |e: String| ApiError::unavailable(format!("error trying to reach {} \"{object}\": {e}", def.kind.to_lowercase()));
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| unreachable(format!("dial tcp {target}: i/o timeout")))?
        .map_err(|e| unreachable(format!("dial tcp {target}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let mut out = Request::builder().method(parts.method).uri(path);
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::AUTHORIZATION && k != header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out.header(header::HOST, target.as_str()).body(body).map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender.send_request(out).await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    Ok(relay(StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY), &content_type, resp.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_of_pods_and_services() {
        let pod = json!({"status": {"podIP": "10.244.0.5"}, "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(pod_target(&pod, "p", "8080").unwrap(), "10.244.0.5:8080");
        assert_eq!(pod_target(&pod, "p", "http").unwrap(), "10.244.0.5:8080");
        assert_eq!(pod_target(&pod, "p", "").unwrap(), "10.244.0.5:80");
        assert_eq!(pod_target(&json!({}), "p", "").unwrap_err().code, 503);
        let svc = json!({"spec": {"ports": [{"name": "web", "port": 80}]}});
        let eps = json!({"subsets": [{"addresses": [{"ip": "10.244.0.7"}], "ports": [{"name": "web", "port": 8080}]}]});
        assert_eq!(service_target(&svc, &eps, "s", "").unwrap(), "10.244.0.7:8080");
        assert_eq!(service_target(&svc, &eps, "s", "web").unwrap(), "10.244.0.7:8080");
        assert_eq!(service_target(&svc, &json!({}), "s", "").unwrap_err().code, 503);
        assert_eq!(split_name("http:web:8080").unwrap(), ("web", "8080"));
        assert!(split_name("https:web:443").is_err());
    }
}
