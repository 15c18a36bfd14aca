//! `timonier image import | ls | rm`: the node's image store, for air-gapped use.

use std::path::PathBuf;

use anyhow::Context;
use timonier_runtime::images::ImageStore;

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The node agent's data directory (the images are in its `images/`). Default: the agent
    /// of `timonier start` (/var/lib/timonier/server/agent) if there is one, else
    /// /var/lib/timonier/agent (`timonier agent`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Import an OCI image layout (directory or tar) or a `docker save` archive.
    Import { file: PathBuf },
    /// List the images.
    Ls,
    /// Remove an image by name or digest.
    Rm { reference: String },
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", units[u])
    }
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        let local = PathBuf::from("/var/lib/timonier/server/agent");
        if local.exists() {
            local
        } else {
            PathBuf::from("/var/lib/timonier/agent")
        }
    });
    let root = data_dir.join("images");
    let store = ImageStore::open(&root).with_context(|| format!("cannot open the image store in {}", root.display()))?;
    match args.command {
        ImageCommand::Import { file } => {
            for image in store.import(&file)? {
                let names = if image.references.is_empty() { "<none>".to_string() } else { image.references.join(", ") };
                println!("imported {names} ({})", image.config_digest);
            }
        }
        ImageCommand::Ls => {
            println!("{:<60} {:<20} {:<14} SIZE", "IMAGE", "TAG", "IMAGE ID");
            for image in store.list() {
                let id: String = image.config_digest.trim_start_matches("sha256:").chars().take(13).collect();
                let refs = if image.references.is_empty() { vec!["<none>:<none>".to_string()] } else { image.references.clone() };
                for r in refs {
                    let (name, tag) = match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                        Some((n, t)) => (n.to_string(), t.to_string()),
                        None => (r.clone(), "<none>".to_string()),
                    };
                    println!("{name:<60} {tag:<20} {id:<14} {}", human(image.size));
                }
            }
        }
        ImageCommand::Rm { reference } => {
            let removed = store.remove(&reference)?;
            for r in &removed.untagged {
                println!("Untagged: {r}");
            }
            if let Some(d) = &removed.deleted {
                println!("Deleted: {d}");
            }
        }
    }
    Ok(())
}
