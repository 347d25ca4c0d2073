"""planetgen's test harness: the real Kubernetes and KServe components, built and run on one machine.

Only what no project provides is ours: the build of pinned Go modules (:mod:`.components`), a
throwaway CA (:mod:`.pki`), process supervision (:mod:`.processes`), the launcher that starts the
control plane (:mod:`.controlplane`) and KServe (:mod:`.kserve`) with their real configuration, and
a way to run a pod's container as a local process with the pod's identity (:mod:`.pods`). No
product package imports this one (an import-linter contract says so).
"""

from planet_harness.cluster import running
from planet_harness.controlplane import ControlPlane
from planet_harness.kserve import KServe
from planet_harness.pods import PodProcess

__all__ = ["ControlPlane", "KServe", "PodProcess", "running"]
