"""k8s-airgap: install Canonical Kubernetes (the k8s snap) behind an air gap."""

__version__ = "0.1.0"
