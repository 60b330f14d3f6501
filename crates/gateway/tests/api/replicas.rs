//! Files on S3 and replicas that share no disk, against a real S3 server the
//! tests start (`s3s-fs`, whose binary `VIDGATE_TEST_S3S_FS` names: see
//! scripts/install-s3s). Without it these tests skip with a message, except in
//! CI, where they fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::crash::{assert_settled_once, finished_after_restart, kill_9, start_with};
use crate::helpers::{Backend, TestApp, eventually, fresh_pg_database, png, split, upload_file};

const ACCESS_KEY: &str = "vidgate-test";
const SECRET_KEY: &str = "vidgate-test-secret-not-for-logs";
const BUCKET: &str = "vidgate-files";
const PREFIX: &str = "replicas";

/// The s3s-fs binary, or `None` (with a message) outside CI when it is not given.
fn s3s_fs() -> Option<PathBuf> {
    match std::env::var_os("VIDGATE_TEST_S3S_FS").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("the S3 tests need s3s-fs in CI: export VIDGATE_TEST_S3S_FS=$(scripts/install-s3s)");
            }
            eprintln!(
                "SKIPPED: VIDGATE_TEST_S3S_FS is unset, so the S3 tests are skipped on this machine \
                 (export VIDGATE_TEST_S3S_FS=$(scripts/install-s3s) to run them)"
            );
            None
        }
    }
}

/// A running s3s-fs on 127.0.0.1, its data folder and its log.
pub struct S3 {
    bin: PathBuf,
    child: Option<Child>,
    pub root: tempfile::TempDir,
    logs: tempfile::TempDir,
    pub port: u16,
    starts: usize,
}

impl S3 {
    /// Starts a server on a free port with one bucket, `BUCKET`.
    pub async fn start() -> Option<Self> {
        let bin = s3s_fs()?;
        let mut s3 = Self {
            bin,
            child: None,
            root: tempfile::tempdir().unwrap(),
            logs: tempfile::tempdir().unwrap(),
            port: 0,
            starts: 0,
        };
        // A bucket of s3s-fs is a folder under its root.
        std::fs::create_dir_all(s3.root.path().join(BUCKET)).unwrap();
        s3.launch().await;
        Some(s3)
    }

    /// Starts the server (again) on `self.port` (0: a free one) and waits until
    /// its log says where it listens.
    async fn launch(&mut self) {
        self.starts += 1;
        let log = self.logs.path().join(format!("s3s-{}.log", self.starts));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut text = String::new();
            std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
            if let Some(at) = text.find("server is running at http://") {
                let rest = &text[at + "server is running at http://".len()..];
                let addr: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
                self.port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3s-fs exited ({status}): {text}");
            }
            assert!(tokio::time::Instant::now() < deadline, "s3s-fs did not start: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data folder.
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `AWS_*` variables that reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Where s3s-fs keeps the object of file `id`.
    pub fn object(&self, id: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(PREFIX).join(id)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn blob_url() -> vidgate::blobs::S3Location {
    vidgate::blobs::S3Location::parse(&format!("s3://{BUCKET}/{PREFIX}")).unwrap()
}

/// An app on `backend` keeping its files on `s3`.
async fn app_on(s3: &S3, backend: Backend, tweak: impl FnOnce(&mut vidgate::config::Config)) -> Option<TestApp> {
    TestApp::spawn_with_env(backend, Some(&s3.env()), |c| {
        c.blob_url = Some(blob_url());
        tweak(c);
    })
    .await
}

/// The files a data folder holds (temporary files aside: none should be left).
fn stored_here(data_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(data_dir.join("files")) {
        Ok(dir) => dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

fn file_id(link: &str) -> String {
    link.split("/files/").nth(1).unwrap().split('?').next().unwrap().to_owned()
}

/// The same link through another replica.
fn through(app: &TestApp, link: &str) -> String {
    format!("{}/files/{}", app.address, link.split("/files/").nth(1).unwrap())
}

/// Two replicas with their own data folders on one PostgreSQL database and one
/// S3 server: an image uploaded through A is the start frame of a task made
/// through B and rendered by B's worker (A has none); the result downloads
/// through A, whole and by range. Neither data folder keeps a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_results_cross_replicas_that_share_no_disk() {
    let Some(s3) = S3::start().await else { return };
    let Some(db) = fresh_pg_database().await else { return };
    let on = |workers: usize| {
        let db = db.clone();
        move |c: &mut vidgate::config::Config| {
            c.database_url = Some(db);
            c.workers = workers;
        }
    };
    let a = app_on(&s3, Backend::Postgres, on(0)).await.unwrap();
    let b = app_on(&s3, Backend::Postgres, on(1)).await.unwrap();
    let key = a.api_key.clone();

    let (s, file) = upload_file(&a, png(500, 400), "start.png").await;
    assert_eq!(s, 200, "{file}");
    let upload = file["url"].as_str().unwrap();
    assert!(s3.object(&file_id(upload)).is_file(), "the upload is not in the bucket");
    let (s, task) = b
        .post_with_key(
            "/v1/videos/generations",
            &json!({"model": "kling-v3-image-to-video", "prompt": "pan left", "image_start": upload, "duration": 3}),
            &key,
        )
        .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    let done = b.wait_task_with_key(id, &key, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let link = done["results"][0].as_str().unwrap();
    assert!(s3.object(&file_id(link)).is_file(), "the result is not in the bucket");

    // Through A, which neither rendered it nor has it on disk.
    let whole = a.client.get(through(&a, link)).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    let mp4 = whole.bytes().await.unwrap();
    let info = vidgate_render::inspect::inspect(&mp4).unwrap();
    assert_eq!((info.width, info.height), (900, 720), "the uploaded frame set the size");
    let part = a.client.get(through(&a, link)).header("Range", "bytes=100-1123").send().await.unwrap();
    assert_eq!(part.status(), 206);
    let range = part.headers()["content-range"].to_str().unwrap().to_owned();
    assert_eq!(range, format!("bytes 100-1123/{}", mp4.len()));
    assert_eq!(part.bytes().await.unwrap(), mp4.slice(100..1124));
    let tail = a.client.get(through(&a, link)).header("Range", format!("bytes={}-", mp4.len())).send().await.unwrap();
    assert_eq!(tail.status(), 416);

    assert_eq!(stored_here(a.data_dir.path()), Vec::<String>::new(), "A keeps files on its disk");
    assert_eq!(stored_here(b.data_dir.path()), Vec::<String>::new(), "B keeps files on its disk");
    a.stop().await;
    b.stop().await;
}

/// Two replica processes on one PostgreSQL database and one S3 server: the one
/// rendering a task is killed with `kill -9`; the other takes the task over
/// after its lease, finishes it and serves the result, and it is charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_replica_holding_the_lease_lets_the_other_finish_charged_once() {
    let Some(s3) = S3::start().await else { return };
    let Some(db) = fresh_pg_database().await else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blob_url = format!("s3://{BUCKET}/{PREFIX}");
    let aws = s3.env();
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("VIDGATE_BLOB_URL", &blob_url));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let first = start_with(dir_a.path(), Some(&db), &env, &[]);
    let key = first.api_key.clone().expect("the first replica prints a key");
    let credits = |url: String| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            let (_, b) = split(client.get(format!("{url}/v1/credits")).bearer_auth(key).send().await.unwrap()).await;
            b["data"]["user"]["remaining_credits"].as_f64().unwrap()
        }
    };
    let before = credits(first.url.clone()).await;
    let (s, task) = split(
        client
            .post(format!("{}/v1/videos/generations", first.url))
            .bearer_auth(&key)
            .json(&json!({"model": "kling-v3-text-to-video", "prompt": "a long storm", "duration": 15, "quality": "1080p"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let price = task["usage"]["credits_reserved"].as_f64().unwrap() / 10_000.0;
    // The first replica is rendering it (the second is not up yet), then dies.
    let rendering = eventually(60, || async {
        let (_, t) =
            split(client.get(format!("{}/v1/tasks/{id}", first.url)).bearer_auth(&key).send().await.unwrap()).await;
        t["status"] == "processing" && t["progress"].as_u64().unwrap_or(0) > 10
    })
    .await;
    assert!(rendering, "the first replica never rendered the task");
    let second = start_with(dir_b.path(), Some(&db), &env, &[]);
    assert!(second.api_key.is_none(), "a replica joining the database makes no key");
    kill_9(first);

    let done = finished_after_restart(&client, &second, &key, &id, 300).await;
    assert_eq!(done["status"], "completed", "{done}");
    let after = credits(second.url.clone()).await;
    assert!((before - price - after).abs() < 1e-9, "charged {} instead of {price}", before - after);
    let link = done["results"][0].as_str().unwrap();
    assert!(link.starts_with(&second.url), "{link}");
    let mp4 = client.get(link).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(vidgate_render::inspect::inspect(&mp4).unwrap().video_frames, 360);
    assert!(s3.object(&file_id(link)).is_file());
    drop(second);
    let row = assert_settled_once(&db, &id).await;
    assert!(row.attempts >= 2, "the task was not taken over: {} attempts", row.attempts);
    // The killed replica may leave its unfinished render's temporary file.
    assert!(stored_here(dir_a.path()).iter().all(|f| f.starts_with('.')), "{:?}", stored_here(dir_a.path()));
    assert_eq!(stored_here(dir_b.path()), Vec::<String>::new());
}

both_backends!(the_janitor_deletes_expired_files_from_s3, |backend| async move {
    let Some(s3) = S3::start().await else { return };
    let tweak = |c: &mut vidgate::config::Config| {
        c.link_ttl_secs = Duration::from_secs(1);
        c.janitor_interval_secs = Duration::from_secs(1);
    };
    let Some(app) = app_on(&s3, backend, tweak).await else { return };
    let (s, file) = upload_file(&app, png(500, 400), "start.png").await;
    assert_eq!(s, 200, "{file}");
    let link = file["url"].as_str().unwrap().to_owned();
    let object = s3.object(&file_id(&link));
    assert!(object.is_file(), "the upload is not in the bucket");
    let gone = eventually(30, || {
        let object = object.clone();
        async move { !object.exists() }
    })
    .await;
    assert!(gone, "the expired file was not deleted from the bucket");
    let (s, _) = split(app.client.get(&link).send().await.unwrap()).await;
    assert_eq!(s, 404);
    app.stop().await;
});

/// Starts the real binary with `env` and answers its exit status, standard
/// error and standard output; it must stop by itself within a minute.
fn failed_start(data_dir: &Path, env: &[(String, String)]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("vidgate started (or hung) with bad blob settings: {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blob_settings_stop_the_start_with_one_line_naming_the_setting() {
    let Some(s3) = S3::start().await else { return };
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let with = |changes: &[(&str, &str)]| {
        let mut env = s3.env();
        env.push(("VIDGATE_BLOB_URL".to_owned(), format!("s3://{BUCKET}/{PREFIX}")));
        for (k, v) in changes {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    };
    let unreachable = format!("http://127.0.0.1:{closed_port}");
    let cases = [
        ("unreachable", with(&[("AWS_ENDPOINT_URL", &unreachable)]), "cannot be reached"),
        ("wrong bucket", with(&[("VIDGATE_BLOB_URL", "s3://no-such-bucket/x")]), "does not exist"),
        ("bad credentials", with(&[("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")]), "credentials were refused"),
        ("not an s3 url", with(&[("VIDGATE_BLOB_URL", "https://example.com/b")]), "s3://bucket/prefix"),
    ];
    for (what, env, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (ok, stderr, stdout) = failed_start(dir.path(), &env);
        assert!(!ok, "{what}: vidgate started");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one line expected: {stderr}");
        assert!(lines[0].contains("VIDGATE_BLOB_URL") && lines[0].contains(expected), "{what}: {stderr}");
        assert!(!stderr.contains(SECRET_KEY) && !stderr.contains("wrong-secret-value"), "{what}: {stderr}");
        assert!(!stdout.contains("API key"), "{what}: a key was made before the check: {stdout}");
    }
}

/// Accepts connections on `port` and closes them at once, counting them: an S3
/// server that is down (its address taken by nothing that answers).
async fn refuse_on(port: u16) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (count, task)
}

both_backends!(a_store_outage_mid_task_is_retried_under_the_lease, |backend| async move {
    let Some(mut s3) = S3::start().await else { return };
    let Some(app) = app_on(&s3, backend, |_| {}).await else { return };
    let before = app.remaining(&app.api_key).await;
    let (s, kept) = upload_file(&app, png(500, 400), "kept.png").await;
    assert_eq!(s, 200, "{kept}");
    let kept = kept["url"].as_str().unwrap().to_owned();
    // The store goes down: its port closes every connection.
    s3.stop();
    let (tries, refuser) = refuse_on(s3.port).await;
    let (s, task) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3})).await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let price = task["usage"]["credits_reserved"].as_f64().unwrap() / 10_000.0;
    // One store request gives up after three tries (two retries): more than
    // that means the step itself was tried again.
    let retried = eventually(120, || {
        let tries = tries.clone();
        async move { tries.load(Ordering::SeqCst) > 3 }
    })
    .await;
    assert!(retried, "the result was not written again: {} connections", tries.load(Ordering::SeqCst));
    let (_, t) = app.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(t["status"], "processing", "the outage ended the task: {t}");
    // Meanwhile uploads and downloads answer 503 in the API's error format.
    let (s, b) = upload_file(&app, png(500, 400), "start.png").await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("service_unavailable")), "{b}");
    let (s, b) = split(app.client.get(&kept).send().await.unwrap()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("service_unavailable")), "{b}");
    // The store comes back on the same port with the same data.
    refuser.abort();
    let _ = refuser.await;
    s3.restart().await;
    let done = app.wait_task(&id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let link = done["results"][0].as_str().unwrap();
    assert!(s3.object(&file_id(link)).is_file());
    let mp4 = app.client.get(link).send().await.unwrap().bytes().await.unwrap();
    assert!(vidgate_render::inspect::inspect(&mp4).is_ok());
    assert_eq!(app.client.get(&kept).send().await.unwrap().bytes().await.unwrap(), png(500, 400));
    assert!((before - price - app.remaining(&app.api_key).await).abs() < 1e-9, "charged other than once");
    let store = &app.state.store;
    let tid = vidgate::ids::TaskId::from_raw(&id);
    assert_eq!(store.ledger_entries(&tid).await.unwrap(), vec!["hold".to_owned(), "settle".to_owned()]);
    assert_eq!(stored_here(app.data_dir.path()), Vec::<String>::new(), "a temporary file was left");
    app.stop().await;
});

/// The S3 backend on its own: a file larger than one part (8 MiB) goes up in
/// parts from its temporary file, which is then gone; its size, a range and
/// the whole read back; a local copy for what needs a path; a delete, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_backend_sends_a_large_file_in_parts_and_reads_it_back_by_range() {
    use futures_util::StreamExt;
    let Some(s3) = S3::start().await else { return };
    let scratch = tempfile::tempdir().unwrap();
    let store = vidgate::blobs::open_store(Some(&blob_url()), &s3.env(), scratch.path().to_owned()).await.unwrap();
    let blobs = vidgate::blobs::Blobs::with_store(
        store,
        scratch.path().to_owned(),
        vidgate::secret::Secret::new("s"),
        "http://h".to_owned(),
    );
    let id = vidgate::ids::FileId::new();
    let bytes: Vec<u8> = (0..20 * 1024 * 1024 + 123).map(|i: u32| (i % 251) as u8).collect();
    let tmp = blobs.temp_path(&id).unwrap();
    std::fs::write(&tmp, &bytes).unwrap();
    blobs.commit_temp(&id).await.unwrap();
    assert!(!tmp.exists(), "the temporary file was left");
    assert_eq!(std::fs::read(s3.object(id.as_str())).unwrap(), bytes, "the object is not the file");
    assert_eq!(blobs.size(&id).await.unwrap(), bytes.len() as u64);
    let mut part = Vec::new();
    let mut stream = blobs.read_range(&id, Some(9_000_000..9_000_100)).await.unwrap();
    while let Some(chunk) = stream.next().await {
        part.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(part, bytes[9_000_000..9_000_100]);
    let copy = blobs.local_copy(&id).await.unwrap();
    assert_eq!(std::fs::read(copy.path()).unwrap(), bytes);
    let copy_path = copy.path().to_owned();
    drop(copy);
    assert!(!copy_path.exists(), "the local copy was not removed");
    blobs.delete(&id).await.unwrap();
    assert!(!s3.object(id.as_str()).exists());
    let missing = blobs.size(&id).await.unwrap_err();
    assert!(vidgate::blobs::is_missing(&missing), "{missing}");
    blobs.delete(&id).await.unwrap();
}

/// A video uploaded through A is probed by B when a task names it (B reads it
/// from the bucket into a temporary copy) and edited by B's renderer; the
/// edit starts on the input's first frame, and no copy is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_uploaded_through_one_replica_is_probed_and_edited_by_the_other() {
    let Some(s3) = S3::start().await else { return };
    let Some(db) = fresh_pg_database().await else { return };
    let on = |workers: usize| {
        let db = db.clone();
        move |c: &mut vidgate::config::Config| {
            c.database_url = Some(db);
            c.workers = workers;
        }
    };
    let a = app_on(&s3, Backend::Postgres, on(0)).await.unwrap();
    let b = app_on(&s3, Backend::Postgres, on(1)).await.unwrap();
    let key = a.api_key.clone();
    let input = crate::helpers::clip("a red lighthouse on a cliff", 720, 3, false);
    let (s, file) = upload_file(&a, input.clone(), "input.mp4").await;
    assert_eq!(s, 200, "{file}");
    let video = file["url"].as_str().unwrap();
    let body = json!({"model": "kling-o3-video-edit", "prompt": "make it sepia", "video_url": video});
    let (s, task) = b.post_with_key("/v1/videos/generations", &body, &key).await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    let done = b.wait_task_with_key(id, &key, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let output = a.client.get(through(&a, done["results"][0].as_str().unwrap())).send().await.unwrap();
    let output = output.bytes().await.unwrap();
    let (out_blocks, _) = crate::helpers::first_frame_blocks(&output);
    let (in_blocks, _) = crate::helpers::first_frame_blocks(&input);
    let same = crate::helpers::block_distance(&out_blocks, &in_blocks);
    assert!(same < 4.0, "the edit's first frame is not the input's: {same:.2} levels apart");
    assert_eq!(stored_here(a.data_dir.path()), Vec::<String>::new());
    assert_eq!(stored_here(b.data_dir.path()), Vec::<String>::new(), "a temporary copy was left");
    a.stop().await;
    b.stop().await;
}

/// An upstream task finishes while the store is down: its result cannot be
/// kept, so it is fetched again at the next poll (the lease held by the
/// poller), never submitted again nor failed; once the store is back the task
/// completes, charged once, with one upstream attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_result_met_by_a_store_outage_is_fetched_again_not_resubmitted() {
    use vidgate::config::{CostTable, KlingProviderConfig, ProviderConfig, RouteConfig};
    let Some(mut s3) = S3::start().await else { return };
    let sim = vidgate_sim::spawn(vidgate_sim::SimConfig { polls_to_finish: 2, ..Default::default() }).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let d = vidgate_sim::SimConfig::default();
    std::fs::write(keys.path().join("ak"), &d.kling_access_key).unwrap();
    std::fs::write(keys.path().join("sk"), &d.kling_secret_key).unwrap();
    let provider = ProviderConfig::Kling(KlingProviderConfig {
        base_url: Some(format!("{}/kling", sim.base_url)),
        access_key_file: Some(keys.path().join("ak")),
        secret_key_file: Some(keys.path().join("sk")),
        timeout_secs: Some(2),
        ..Default::default()
    });
    let usd = 0.05;
    let route = RouteConfig {
        model: "kling-v3-text-to-video".to_owned(),
        provider: "sim".to_owned(),
        upstream_model: "kling-v3".to_owned(),
        upstream_models: Default::default(),
        cost_usd_per_second: CostTable { p720: usd, p720_sound: usd, p1080: usd, p1080_sound: usd, p4k: usd },
        supports: ["sound", "1080p"].map(str::to_owned).to_vec(),
    };
    let app = app_on(&s3, Backend::Sqlite, |c| {
        c.upstream_poll_min_ms = Duration::from_millis(50);
        c.upstream_poll_max_ms = Duration::from_millis(200);
        c.providers.insert("sim".to_owned(), provider);
        c.routes.push(route);
    })
    .await
    .unwrap();
    let before = app.remaining(&app.api_key).await;
    s3.stop();
    let (tries, refuser) = refuse_on(s3.port).await;
    let (s, task) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3})).await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let price = task["usage"]["credits_reserved"].as_f64().unwrap() / 10_000.0;
    // More connections than one store request makes: the result was tried again.
    let retried = eventually(60, || {
        let tries = tries.clone();
        async move { tries.load(Ordering::SeqCst) > 3 }
    })
    .await;
    assert!(retried, "the result was not stored again: {} connections", tries.load(Ordering::SeqCst));
    let (_, t) = app.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(t["status"], "processing", "the outage ended the task: {t}");
    refuser.abort();
    let _ = refuser.await;
    s3.restart().await;
    let done = app.wait_task(&id, 60, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(s3.object(&file_id(done["results"][0].as_str().unwrap())).is_file());
    assert_eq!(sim.stats().accepted, 1, "submitted again: {:?}", sim.stats());
    let (_, attempts) = app.admin_get(&format!("/admin/tasks/{id}/attempts")).await;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(attempts["attempts"][0]["status"], "succeeded", "{attempts}");
    assert!((before - price - app.remaining(&app.api_key).await).abs() < 1e-9, "charged other than once");
    assert_eq!(stored_here(app.data_dir.path()), Vec::<String>::new(), "a temporary file was left");
    app.stop().await;
}
