//! The server backend against a scripted HTTP server on 127.0.0.1.
//!
//! The server answers each connection with the next scripted response and records the
//! requests; it serves at most its script's length and stops by itself after 10 s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mrl_llm::{
    ApiKey, Backend, Error, FinishReason, GenerateConfig, Message, Sampling, ServerBackend,
    ServerConfig,
};

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay_ms: u64,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay_ms: 0,
    }
}

#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: String,
}

/// Starts the scripted server; returns its base URL and the recorded requests.
fn serve(script: Vec<Reply>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut script = script.into_iter();
        while Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let Some(reply) = script.next() else { return };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).ok();
            record.lock().unwrap().push(Request {
                head,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            std::thread::sleep(Duration::from_millis(reply.delay_ms));
            let mut stream = reader.into_inner();
            let mut text = format!(
                "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                reply.status,
                reply.body.len()
            );
            for (k, v) in &reply.headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str(&reply.body);
            stream.write_all(text.as_bytes()).ok();
        }
    });
    (base, seen)
}

fn config(base: &str) -> ServerConfig {
    ServerConfig {
        base_url: base.to_string(),
        model: "qwen-test".into(),
        timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        max_retries: 2,
        backoff_ms: 1,
        max_backoff_ms: 5,
        max_response_bytes: 4096,
        ..ServerConfig::default()
    }
}

const OK: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"{\"return_pct\": 0.4}"},"finish_reason":"length"}],"usage":{"prompt_tokens":31,"completion_tokens":7,"total_tokens":38}}"#;

fn ask(backend: &mut ServerBackend) -> mrl_llm::Result<mrl_llm::Completion> {
    let config = GenerateConfig {
        max_new_tokens: 64,
        sampling: Sampling::TopP {
            temperature: 0.5,
            top_p: 0.8,
        },
        seed: 9,
    };
    backend.chat(
        &[Message::system("be brief"), Message::user("next return?")],
        &config,
    )
}

#[test]
fn a_completion_is_requested_and_parsed() {
    let (base, seen) = serve(vec![reply(200, OK)]);
    let mut backend =
        ServerBackend::with_api_key(config(&base), Some(ApiKey::new("sk-test-7"))).unwrap();
    let completion = ask(&mut backend).unwrap();
    assert_eq!(completion.text, r#"{"return_pct": 0.4}"#);
    assert_eq!(completion.prompt_tokens, 31);
    assert_eq!(completion.completion_tokens, 7);
    assert_eq!(completion.finish, FinishReason::Length);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0]
            .head
            .starts_with("POST /v1/chat/completions HTTP/1.1")
    );
    assert!(
        requests[0]
            .head
            .to_ascii_lowercase()
            .contains("authorization: bearer sk-test-7")
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "model": "qwen-test",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "next return?"}
            ],
            "max_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.8,
            "seed": 9,
            "stream": false
        })
    );
}

#[test]
fn greedy_is_temperature_zero_and_no_key_sends_no_header() {
    let (base, seen) = serve(vec![reply(200, OK)]);
    let mut backend = ServerBackend::with_api_key(config(&base), None).unwrap();
    backend
        .chat(&[Message::user("hi")], &GenerateConfig::greedy(5))
        .unwrap();
    let request = seen.lock().unwrap()[0].clone();
    assert!(!request.head.to_ascii_lowercase().contains("authorization"));
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["top_p"], 1.0);
    assert_eq!(body["max_tokens"], 5);
}

#[test]
fn server_errors_are_retried_until_one_succeeds() {
    let (base, seen) = serve(vec![reply(500, "boom"), reply(503, "busy"), reply(200, OK)]);
    let mut backend = ServerBackend::with_api_key(config(&base), None).unwrap();
    assert!(ask(&mut backend).is_ok());
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn persistent_server_errors_end_with_the_status_and_attempts() {
    let (base, seen) = serve(vec![
        reply(502, "bad gateway"),
        reply(502, "bad gateway"),
        reply(502, "bad gateway"),
    ]);
    let mut backend = ServerBackend::with_api_key(config(&base), None).unwrap();
    match ask(&mut backend) {
        Err(Error::Http {
            status: 502,
            attempts: 3,
            body,
            ..
        }) => assert_eq!(body, "bad gateway"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn client_errors_are_not_retried_and_do_not_show_the_key() {
    let (base, seen) = serve(vec![reply(401, r#"{"error":"invalid key"}"#)]);
    let mut backend =
        ServerBackend::with_api_key(config(&base), Some(ApiKey::new("sk-hidden-1"))).unwrap();
    let err = ask(&mut backend).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Http {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {backend:?}");
    assert!(!shown.contains("sk-hidden"), "{shown}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn rate_limits_honour_retry_after_and_end_in_a_rate_limited_error() {
    let limited = || Reply {
        status: 429,
        headers: vec![("Retry-After", "0".into())],
        body: String::new(),
        delay_ms: 0,
    };
    let (base, seen) = serve(vec![limited(), limited(), limited()]);
    let mut backend = ServerBackend::with_api_key(config(&base), None).unwrap();
    match ask(&mut backend) {
        Err(Error::RateLimited {
            attempts: 3,
            retry_after_ms: Some(0),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn oversized_and_malformed_responses_are_refused() {
    let huge = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#,
        "x".repeat(5000)
    );
    let (base, _) = serve(vec![
        reply(200, &huge),
        reply(200, "not json"),
        reply(200, r#"{"choices":[]}"#),
        reply(200, r#"{"choices":[{"message":{"role":"assistant"}}]}"#),
    ]);
    let mut backend = ServerBackend::with_api_key(config(&base), None).unwrap();
    assert!(matches!(
        ask(&mut backend),
        Err(Error::ResponseTooLarge {
            limit_bytes: 4096,
            ..
        })
    ));
    for reason in ["expected ident", "no choices", "no message content"] {
        match ask(&mut backend) {
            Err(Error::BadResponse { reason: r, .. }) => assert!(r.contains(reason), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_slow_server_times_out() {
    let slow = || Reply {
        delay_ms: 600,
        ..reply(200, OK)
    };
    let (base, _) = serve(vec![slow(), slow()]);
    let mut backend = ServerBackend::with_api_key(
        ServerConfig {
            timeout_ms: 150,
            max_retries: 1,
            ..config(&base)
        },
        None,
    )
    .unwrap();
    let start = Instant::now();
    match ask(&mut backend) {
        Err(Error::Timeout {
            timeout_ms: 150,
            attempts: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Two attempts of 150 ms, not two of the server's 600 ms (slack for a busy machine).
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_unreachable_server_is_a_transport_error() {
    // Bind and drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let mut backend = ServerBackend::with_api_key(
        ServerConfig {
            max_retries: 1,
            ..config(&base)
        },
        None,
    )
    .unwrap();
    match ask(&mut backend) {
        Err(Error::Transport { attempts: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
}
