"""`make data`: download the sweep's dataset (CIFAR, Fashion-MNIST, MNIST, SVHN) with torchvision
(checksums verified) into dataset.root.

For a node with internet (a login node); compute nodes read the files it leaves there.
"""

from __future__ import annotations

import sys

from al_core.cli import EXIT_IO, Parser, fail, guarded
from al_core.data.files import DOWNLOADS, download as download_real


@guarded
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m al_core.data.download", description="Download the dataset a sweep file names.")
    p.sweep_arguments()
    args, sweep = p.parse_sweep(argv)
    name, root = sweep.dataset.name, sweep.dataset.root
    if name not in DOWNLOADS:
        print(f"{name}: bundled, generated or the researcher's own files; nothing to download")
        return 0
    try:
        path = download_real(name, root)
    except Exception as e:  # urllib's URLError, socket errors, checksum failures
        reason = " ".join(str(getattr(e, "reason", None) or e).split())  # one line (torchvision's spans several)
        fail(
            f"cannot download {name} into {root} ({reason}); expected a node with internet access, e.g. the cluster's login node",
            EXIT_IO,
        )
    print(f"{name}: ready in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
