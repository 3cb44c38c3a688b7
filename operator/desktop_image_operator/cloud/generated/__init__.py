"""The Yandex Cloud gRPC modules the operator uses (`python -m desktop_image_operator_dev.stubs`)."""
