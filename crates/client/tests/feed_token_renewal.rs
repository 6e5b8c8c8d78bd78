//! Renewing the feed's token (`gpubook feed --new-token`) stops the old URL at once, also in a
//! feed that is already running: real HTTP on 127.0.0.1, the token kept in a real file.

use gpubook_client::feed::{self, FeedServer, FeedSet};
use std::path::Path;

/// A feed of an empty calendar with its token kept in `dir`, running until the test ends.
async fn start(dir: &Path) -> String {
    let set = FeedSet::new("Renewal test");
    let server = FeedServer::bind_stored("127.0.0.1:0".parse().unwrap(), dir, false)
        .await
        .unwrap();
    let url = server.url().unwrap();
    let body = set.body();
    tokio::spawn(async move {
        // The set lives as long as the server, so the calendar stays.
        let _set = set;
        server.run(body, std::future::pending()).await;
    });
    url
}

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_token_stops_the_old_url_of_a_running_feed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let old_url = start(&state).await;
    let old = feed::stored_token(&state, false).unwrap();
    assert!(old_url.contains(&old), "{old_url}");
    let http = reqwest::Client::new();
    assert_eq!(status(&http, &old_url).await, 200);

    // What `gpubook feed --new-token` does, from another process's point of view: the file.
    let new = feed::stored_token(&state, true).unwrap();
    assert_ne!(new, old);
    let new_url = old_url.replace(&old, &new);
    // The very next request: no waiting, no restart.
    assert_eq!(status(&http, &old_url).await, 404);
    assert_eq!(status(&http, &new_url).await, 200);
    let r = http.get(&new_url).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("BEGIN:VCALENDAR"));

    // A removed token file lets no one in.
    std::fs::remove_file(state.join(feed::TOKEN_FILE)).unwrap();
    assert_eq!(status(&http, &new_url).await, 404);
    // Made again (the next `gpubook feed`): a third token, and only it.
    let third = feed::stored_token(&state, false).unwrap();
    assert!(third != old && third != new);
    assert_eq!(status(&http, &new_url).await, 404);
    assert_eq!(status(&http, &old_url.replace(&old, &third)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_started_with_renew_makes_a_new_token_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = feed::stored_token(dir.path(), false).unwrap();
    let server = FeedServer::bind_stored("127.0.0.1:0".parse().unwrap(), dir.path(), true)
        .await
        .unwrap();
    let url = server.url().unwrap();
    let kept = feed::stored_token(dir.path(), false).unwrap();
    assert_ne!(kept, old);
    assert!(
        url.ends_with(&format!("/{kept}/{}", feed::FILE_NAME)),
        "{url}"
    );
    // Readable by its owner only, and no temporary file left behind.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(feed::TOKEN_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [feed::TOKEN_FILE]);
}
