# Pinned versions of everything the local cluster builds. Sourced by lib.sh.
K8S_VERSION=v1.33.13          # newest 1.33 patch on the Go module proxy
K8S_STAGING_VERSION=v0.33.13  # k8s.io/<staging> modules of that release
COREDNS_VERSION=v1.14.7       # go 1.25 module, builds with our Go
ETCD_VERSION=v3.5.35          # the 3.5 line Kubernetes 1.33 is tested with
