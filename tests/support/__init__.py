"""What the tests share: the kubectl wrapper and object helpers (`kube`), DesktopImage manifests
(`manifests`), the fake cloud and operator processes (`processes`), and loopback servers (`servers`).
Test modules import from here, never from one another."""
