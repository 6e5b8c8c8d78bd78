//! The CI examples (examples/ci/*.yml) run as written: their SSH set-up and training scripts
//! are read out of the YAML (parsed by PyYAML, not copied here) and run by bash, as a runner
//! would, against the test sshd as a real user with a deploy key and the host key pinned. The
//! training's exit status comes through, the weights saved by the agent (`--save`) are where
//! the `job_saved` line of `--json` output says, and a host key other than the pinned one is
//! refused (exit 8).

mod support;

use gpubook_testkit::sshd;

use sshd::{agent_binary, keygen, runnable_copy, Sshd, User};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::text;

/// The example file `name`, parsed as YAML into JSON.
fn example(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ci")
        .join(name);
    let o = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&path)
        .output()
        .expect("run python3 (PyYAML reads the examples)");
    assert!(o.status.success(), "{}: {}", path.display(), text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The (set-up, training) scripts of each example.
fn scripts() -> Vec<(&'static str, String, String)> {
    let gh = example("github-actions.yml");
    let steps = gh["jobs"]["train"]["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("no step {id} in github-actions.yml"))
            .to_string()
    };
    let gl = example("gitlab-ci.yml");
    let joined = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    vec![
        ("github", step("ssh"), step("train")),
        (
            "gitlab",
            joined(&gl["train"]["before_script"]),
            joined(&gl["train"]["script"]),
        ),
    ]
}

/// A runner: its own home, `gpubook` on its PATH, the CI's variables.
struct Runner {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Runner {
    fn new(vars: &[(&str, &str)], bin: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path_dir = dir.path().join("bin");
        std::fs::create_dir(&path_dir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gpubook"), path_dir.join("gpubook"))
            .unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let mut env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend([
            ("HOME".into(), dir.path().join("home").display().to_string()),
            (
                "PATH".into(),
                format!("{}:/usr/bin:/bin", path_dir.display()),
            ),
            ("GPUBOOK_AGENT_BINARY".into(), bin.display().to_string()),
            ("GPUBOOK_REMOTE_GPUS".into(), "sim:1".into()),
            (
                "GITHUB_OUTPUT".into(),
                dir.path().join("output").display().to_string(),
            ),
            ("TZ".into(), "UTC".into()),
        ]);
        Runner { dir, env }
    }

    /// Runs `script` with bash in the job's directory, as the runner does.
    fn run(&self, script: &str, extra: &[(&str, &str)]) -> Output {
        Command::new("bash")
            .args(["-e", "-c", script])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn file(&self, name: &str) -> String {
        sshd::read(&self.dir.path().join(name))
    }
}

#[test]
fn the_ci_examples_train_over_ssh_and_pass_the_status_and_the_weights_on() {
    if !sshd::available("the_ci_examples_train_over_ssh_and_pass_the_status_and_the_weights_on") {
        return;
    }
    let sshd = Sshd::start("");
    let user = User::fresh("gpb-ssh-ci");
    let keys = tempfile::tempdir().unwrap();
    let deploy = keygen(&keys.path().join("deploy"), "");
    user.authorize(&deploy.with_extension("pub"));
    let bin = runnable_copy(&agent_binary(), keys.path());
    let workdir = user.home.join("yolo");
    std::fs::create_dir_all(&workdir).unwrap();
    std::os::unix::fs::chown(&workdir, Some(user.uid), Some(user.gid)).unwrap();
    let save_root = user.home.join("models");
    let port = sshd.port.to_string();
    let key = std::fs::read_to_string(&deploy).unwrap();
    let pinned = sshd.known_hosts_line();
    let (workdir_s, save_s) = (
        workdir.display().to_string(),
        save_root.display().to_string(),
    );
    let vars = |known: &str| -> Vec<(&str, String)> {
        vec![
            ("GPUBOOK_DEPLOY_KEY", key.clone()),
            ("GPUBOOK_KNOWN_HOSTS", known.to_string()),
            ("GPUBOOK_HOST", "127.0.0.1".into()),
            ("GPUBOOK_PORT", port.clone()),
            ("GPUBOOK_USER", user.name.clone()),
            ("TRAIN_FOR", "1h".into()),
            ("WORKDIR", workdir_s.clone()),
            ("SAVE_ROOT", save_s.clone()),
        ]
    };
    let good = vars(&pinned);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let train_ok =
        "mkdir -p runs/ci && echo 'epoch 1 loss 0.25' && printf trained > runs/ci/best.pt";

    for (ci, setup, train) in scripts() {
        let runner = Runner::new(&good, &bin);
        let o = runner.run(&setup, &[]);
        assert!(o.status.success(), "{ci} setup: {}", text(&o));

        // A training that works: status 0, its log shown, the weights' place passed on.
        let o = runner.run(&train, &[("TRAIN_CMD", train_ok)]);
        assert_eq!(o.status.code(), Some(0), "{ci} train: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("epoch 1 loss 0.25"),
            "{ci}: {}",
            text(&o)
        );
        let weights: PathBuf = match ci {
            "github" => runner.file("output"),
            _ => runner.file("weights.env"),
        }
        .trim()
        .split_once('=')
        .map(|(_, v)| PathBuf::from(v))
        .unwrap_or_else(|| {
            panic!(
                "{ci}: no weights passed on: {}\nrun.json: {}",
                text(&o),
                runner.file("run.json")
            )
        });
        assert!(
            weights.starts_with(&save_root),
            "{ci}: {}",
            weights.display()
        );
        assert_eq!(
            sshd::read(&weights),
            "trained",
            "{ci}: {}",
            weights.display()
        );
        // Saved by the agent (--save), its place and checksum in a job_saved line.
        let run_json = runner.file("run.json");
        let saved: serde_json::Value = run_json
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("job_saved").cloned())
            .unwrap_or_else(|| panic!("{ci}: no job_saved line: {run_json}"));
        assert_eq!(saved["files"][0]["name"], "runs/ci/best.pt", "{saved}");
        assert_eq!(saved["files"][0]["size"], 7, "{saved}");
        assert_eq!(saved["files"][0]["sha256"].as_str().map(str::len), Some(64));

        // A training that fails: its status is the step's, and no weights are passed on.
        let runner = Runner::new(&good, &bin);
        assert!(runner.run(&setup, &[]).status.success());
        let o = runner.run(&train, &[("TRAIN_CMD", "echo diverged; exit 3")]);
        assert_eq!(o.status.code(), Some(3), "{ci} failing train: {}", text(&o));
        assert!(runner.file("output").is_empty() && runner.file("weights.env").is_empty());

        // Another host key than the pinned one: refused before anything is booked.
        let other = keygen(&keys.path().join("not-the-server"), "");
        let forged = format!(
            "[127.0.0.1]:{port} {}",
            std::fs::read_to_string(other.with_extension("pub"))
                .unwrap()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let wrong = vars(&forged);
        let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let runner = Runner::new(&wrong, &bin);
        assert!(runner.run(&setup, &[]).status.success());
        let o = runner.run(&train, &[("TRAIN_CMD", train_ok)]);
        assert_eq!(
            o.status.code(),
            Some(8),
            "{ci} forged host key: {}",
            text(&o)
        );
    }
    user.kill_all();
}
