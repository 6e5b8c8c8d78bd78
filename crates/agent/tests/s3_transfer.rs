//! Stage-in from and save to S3 through the real agent running as root, for a real non-root
//! owner whose credentials are theirs on the server (`~/.aws/credentials`, the endpoint in
//! `~/.aws/config`, or the profile or environment file the booking names, read as the owner),
//! against a real S3-compatible server started here on 127.0.0.1: moto's server mode
//! (`. scripts/s3-services.sh` sets `GPUBOOK_MOTO_SERVER`). Without it the tests skip, unless
//! `GPUBOOK_REQUIRE_SERVICES=1`. Needs root; see `jobs_support`.

mod jobs_support;

use gpubook_core::Note;
use gpubook_proto::EventKind;
use jobs_support::{
    book, booked, ensure_user, job, require_root, secs, slot_start, Events, Lab, User, DEADLINE,
    JOBBER, OTHER, SERVER,
};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BUCKET: &str = "gpubook-test";

/// moto's S3 server on a free port of 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request (moto takes unsigned ones); the status and body.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head[9..12].parse().expect("status");
    let mut rest = out[split..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest = dechunk(&rest);
    }
    (status, rest)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

fn moto() -> Option<Moto> {
    let Ok(server) = std::env::var("GPUBOOK_MOTO_SERVER") else {
        assert!(
            std::env::var("GPUBOOK_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "GPUBOOK_REQUIRE_SERVICES=1 but GPUBOOK_MOTO_SERVER is not set: \
             . scripts/s3-services.sh"
        );
        eprintln!("skipped: no S3 server (. scripts/s3-services.sh)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let m = Moto { child, port };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < until, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http(port, "PUT", &format!("/{BUCKET}"), b"").0,
        200,
        "bucket made"
    );
    Some(m)
}

/// The owner's own credentials and endpoint, in their home on the server.
fn owner_credentials(user: &User, port: u16) {
    let aws = user.home.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!("[default]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:{port}\n"),
    )
    .unwrap();
    for p in [aws.join("credentials"), aws.join("config"), aws.clone()] {
        std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
        let mode = if p == aws { 0o700 } else { 0o600 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The bucket as the test sees it, with moto's test keys.
fn bucket(port: u16) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_region("us-east-1")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .build()
        .expect("the test's S3 client")
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_reach_s3_and_s3_data_is_staged_with_the_owner_s_credentials() {
    if !require_root("results_reach_s3_and_s3_data_is_staged") {
        return;
    }
    let Some(s3) = moto() else { return };
    let jobber = ensure_user(JOBBER);
    owner_credentials(&jobber, s3.port);
    let lab = Lab::new(2);
    let scratch = lab.path().join("scratch");
    lab.policy(&format!("scratch = \"{}\"\n", scratch.display()));
    let mut lab = lab;
    lab.start().await;
    let mut events = Events::subscribe(&lab).await;
    let work = lab.out_dir("work", &jobber);
    let user = lab.connect_as(&jobber).await;

    // Save: the checkpoint reaches the bucket, its checksum equal.
    let mut spec = job("mkdir -p runs/a && head -c 2500000 /dev/urandom > runs/a/best.pt");
    spec.cwd = Some(work.display().to_string());
    spec.save = vec!["runs/**/best.pt".into()];
    spec.save_to = Some(format!("s3://{BUCKET}/yolo/{{server}}-{{id}}/"));
    let start = slot_start(2);
    let id = booked(
        user.conn
            .request(book(&["0"], start, start + secs(20), "train", Some(spec)))
            .await,
    )
    .booking
    .id;
    let e = events.wait_for(id, EventKind::JobSaved, DEADLINE).await;
    let Some(Note::Saved { to, files }) = &e.note else {
        panic!("job_saved without its files: {:?}", e.note);
    };
    assert_eq!(to, &format!("s3://{BUCKET}/yolo/{SERVER}-{id}/"));
    assert_eq!(files.len(), 1);
    let local = std::fs::read(work.join("runs/a/best.pt")).unwrap();
    let store = bucket(s3.port);
    let key = format!("yolo/{SERVER}-{id}/runs/a/best.pt");
    let remote = store
        .get(&ObjectPath::from(key))
        .await
        .expect("the saved object")
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&remote), sha256(&local), "equal in the bucket");
    assert_eq!(files[0].sha256, sha256(&local));
    assert_eq!(files[0].size, local.len() as u64);

    // Stage: objects under a prefix land in scratch; a second booking downloads nothing.
    let objects: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("sub{}/f{i}.txt", i % 3),
                vec![b'a' + (i as u8); 1000 + i * 10],
            )
        })
        .collect();
    for (k, body) in &objects {
        let at = ObjectPath::from(format!("coco/{k}"));
        store.put(&at, body.clone().into()).await.expect("upload");
    }
    let staged = |gpu: &'static str, lead: i64| {
        let mut spec = job("true");
        spec.stage
            .insert("coco".into(), format!("s3://{BUCKET}/coco"));
        let start = slot_start(lead);
        book(&[gpu], start, start + secs(3), "staged", Some(spec))
    };
    let first = booked(user.conn.request(staged("1", 30)).await).booking.id;
    let ready = events
        .wait_for(first, EventKind::StageReady, DEADLINE)
        .await;
    let Some(Note::Stage {
        copied_files, dir, ..
    }) = &ready.note
    else {
        panic!("stage_ready without figures: {:?}", ready.note);
    };
    assert_eq!(*copied_files, objects.len() as u64);
    for (k, body) in &objects {
        let got = std::fs::read(Path::new(dir).join("coco").join(k)).unwrap();
        assert!(&got == body, "{k} equal");
    }
    let second = booked(user.conn.request(staged("1", 60)).await).booking.id;
    let ready = events
        .wait_for(second, EventKind::StageReady, DEADLINE)
        .await;
    let Some(Note::Stage {
        copied_files,
        kept_files,
        ..
    }) = &ready.note
    else {
        panic!("stage_ready without figures: {:?}", ready.note);
    };
    assert_eq!((*copied_files, *kept_files), (0, objects.len() as u64));
}

/// Writes `body` to `path` as `user`'s own, readable by them alone.
fn owners_file(path: &Path, body: &str, user: &User) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_profile_or_an_owner_s_environment_file_is_used_and_a_missing_one_is_told() {
    if !require_root("a_named_profile_or_an_owner_s_environment_file_is_used") {
        return;
    }
    let Some(s3) = moto() else { return };
    // Not the other test's user: its ~/.aws is written by that test at the same time.
    let jobber = ensure_user(OTHER);
    // [default] leads nowhere (a closed port); [lab] and the environment file lead to moto.
    let aws = jobber.home.join(".aws");
    let _ = std::fs::remove_dir_all(&aws);
    owners_file(
        &aws.join("credentials"),
        "[default]\naws_access_key_id = d\naws_secret_access_key = d\n\n\
         [lab]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        &jobber,
    );
    owners_file(
        &aws.join("config"),
        &format!(
            "[default]\nendpoint_url = http://127.0.0.1:1\n\n[profile lab]\n\
             region = us-east-1\nendpoint_url = http://127.0.0.1:{}\n",
            s3.port
        ),
        &jobber,
    );
    std::os::unix::fs::chown(&aws, Some(jobber.uid), Some(jobber.gid)).unwrap();
    let env_file = jobber.home.join(".config/gpubook-s3.env");
    owners_file(
        &env_file,
        &format!(
            "# the lab's MinIO\nexport AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=\"testing\"\n\
             AWS_ENDPOINT_URL=http://127.0.0.1:{}\n",
            s3.port
        ),
        &jobber,
    );
    let lab = Lab::new(4);
    let scratch = lab.path().join("scratch");
    lab.policy(&format!("scratch = \"{}\"\n", scratch.display()));
    let mut lab = lab;
    lab.start().await;
    // Root's own, beside it: readable by the agent, not by the owner.
    let roots = lab.path().join("root-s3.env");
    std::fs::write(
        &roots,
        "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n",
    )
    .unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut events = Events::subscribe(&lab).await;
    let user = lab.connect_as(&jobber).await;
    let store = bucket(s3.port);
    store
        .put(
            &ObjectPath::from("named/a.txt"),
            b"from the lab profile".to_vec().into(),
        )
        .await
        .expect("upload");

    let staged = |gpu: &'static str, profile: Option<&str>, env_file: Option<String>| {
        let mut spec = job("true");
        spec.stage
            .insert("d".into(), format!("s3://{BUCKET}/named"));
        spec.s3 = gpubook_core::S3Access {
            profile: profile.map(Into::into),
            env_file,
        };
        let start = slot_start(30);
        book(&[gpu], start, start + secs(3), "staged", Some(spec))
    };
    let reason = |e: &gpubook_proto::Event| match &e.note {
        Some(Note::TransferFailed { reason, .. }) => reason.clone(),
        other => panic!("a failure without its reason: {other:?}"),
    };

    // --s3-profile lab: staged from moto.
    let by_profile = booked(user.conn.request(staged("0", Some("lab"), None)).await)
        .booking
        .id;
    let ready = events
        .wait_for(by_profile, EventKind::StageReady, DEADLINE)
        .await;
    let Some(Note::Stage { dir, .. }) = &ready.note else {
        panic!("stage_ready without figures: {:?}", ready.note);
    };
    let got = std::fs::read(Path::new(dir).join("d/a.txt")).unwrap();
    assert_eq!(got, b"from the lab profile");

    // --s3-env-file ~/...: the file alone, with no profile named, reaches moto.
    let by_file = staged("1", None, Some("~/.config/gpubook-s3.env".into()));
    let by_file = booked(user.conn.request(by_file).await).booking.id;
    events
        .wait_for(by_file, EventKind::StageReady, DEADLINE)
        .await;

    // A profile that is not there: told before the slot, naming it and what to do.
    let missing = booked(user.conn.request(staged("2", Some("nope"), None)).await)
        .booking
        .id;
    let e = events
        .wait_for(missing, EventKind::StageFailed, DEADLINE)
        .await;
    assert!(e.at < e.booking.interval.start, "told before the slot");
    let why = reason(&e);
    assert!(
        why.contains("no [nope] profile") && why.contains("--s3-profile"),
        "{why}"
    );

    // An environment file the owner may not read is refused, though root could read it.
    let denied = staged("3", None, Some(roots.display().to_string()));
    let denied = booked(user.conn.request(denied).await).booking.id;
    let e = events
        .wait_for(denied, EventKind::StageFailed, DEADLINE)
        .await;
    let why = reason(&e);
    assert!(
        why.contains("Permission denied") && why.contains("root-s3.env"),
        "{why}"
    );
}
