//! Writes the SessionCluster CRD to `crds/` and to the chart's `crds/` (or to stdout with `-`).

use anyhow::Context;
use sessionstore_api::crd::{crd_yaml, workspace_root, CRD_DIRS, CRD_FILE};

fn main() -> anyhow::Result<()> {
    let yaml = crd_yaml().context("rendering the CRD")?;
    if std::env::args().nth(1).as_deref() == Some("-") {
        print!("{yaml}");
        return Ok(());
    }
    let root = workspace_root();
    for dir in CRD_DIRS {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(CRD_FILE);
        std::fs::write(&path, &yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
