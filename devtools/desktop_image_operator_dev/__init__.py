"""Development tooling of desktop-image-operator: the fake Yandex Cloud, the local control plane, `dev`, the
manifest renderer. Never part of the operator's wheel or image."""
