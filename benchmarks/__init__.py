"""Benchmarks of the DesktopImage operator against the local control plane and the fake cloud.

`python -m benchmarks` (or `make bench`) starts a real etcd + kube-apiserver with an audit log of write
requests, the fake Yandex Cloud and the operator as child processes, drives them with kubectl, and writes
`reports/benchmarks.md` and `reports/benchmarks.json`: cloud calls (from the fake's request log), the
operator's API-server writes (from the audit log), timings and the operator's memory.

Timings are measurements on the machine that ran them, not guarantees.
"""
