//! Runs a few commands in a running container through [`ssp_lxd::Attach`] and through LXD's
//! exec, printing what each saw: `cargo run -p ssp-lxd --example attach_smoke -- INSTANCE`.

use ssp_lxd::{Attach, Client, ExecOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let instance = std::env::args().nth(1).ok_or("usage: attach_smoke INSTANCE")?;
    let client = Client::from_env()?;
    let attach = Attach::discover(&client).await?;
    println!("{attach:?}");
    let script = "id; tty; cat /proc/self/cgroup; grep -E 'Seccomp|NoNewPrivs|CapEff' /proc/self/status; ls -l /proc/self/fd; readlink /proc/self/ns/*; env | sort";
    for pty in [None, Some((100, 30))] {
        let command: Vec<String> = ["/bin/sh", "-c", script].map(String::from).to_vec();
        let options = ExecOptions { uid: 1000, gid: 1000, init_groups: true, pty, ..Default::default() };
        for (name, exec) in [
            ("attach", attach.exec(&instance, &command, options.clone()).await.map_err(|e| e.to_string())),
            ("lxd", client.exec(&instance, &command, options.clone()).await.map_err(|e| e.to_string())),
        ] {
            let mut exec = exec?;
            exec.stdin.close().await.ok();
            let mut stdout = std::mem::replace(&mut exec.stdout, tokio::sync::mpsc::channel(1).1);
            let mut stderr = std::mem::replace(&mut exec.stderr, tokio::sync::mpsc::channel(1).1);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let started = std::time::Instant::now();
            let collect = async {
                while let Some(chunk) = stdout.recv().await {
                    out.extend_from_slice(&chunk);
                }
                while let Some(chunk) = stderr.recv().await {
                    err.extend_from_slice(&chunk);
                }
            };
            collect.await;
            let exit = exec.wait().await?;
            println!(
                "==== {name} pty={pty:?} exit={exit:?} in {:?}\n{}\n{}",
                started.elapsed(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
    }
    match attach.connect(&instance, 22).await {
        Ok(Ok(stream)) => println!("connect 22: {:?} -> {:?}", stream.local_addr(), stream.peer_addr()),
        Ok(Err(e)) => println!("connect 22 failed: {e}"),
        Err(e) => println!("connect unavailable: {e}"),
    }
    Ok(())
}
