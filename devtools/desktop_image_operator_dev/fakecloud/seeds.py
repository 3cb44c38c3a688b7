"""The sources the fake starts with. The ids are fixed so examples and tests can name them."""

from __future__ import annotations

from desktop_image_operator_dev.fakecloud.model import Cloud, ComputeImage, Desktop, Folder

GIB = 1 << 30

CLOUD_ID = "b1gcloud000000000001"
OTHER_CLOUD_ID = "b1gcloud000000000002"

FOLDER_ID = "b1gfolder00000000001"
SECOND_FOLDER_ID = "b1gfolder00000000002"  # in the same cloud as FOLDER_ID
OTHER_CLOUD_FOLDER_ID = "b1gfolder00000000003"

STOPPED_DESKTOP_ID = "e3vdesktop0000000001"
RUNNING_DESKTOP_ID = "e3vdesktop0000000002"
SECOND_FOLDER_DESKTOP_ID = "e3vdesktop0000000003"  # stopped
OTHER_CLOUD_DESKTOP_ID = "e3vdesktop0000000004"  # stopped
SECOND_STOPPED_DESKTOP_ID = "e3vdesktop0000000005"

COMPUTE_IMAGE_ID = "fd8image000000000001"
LARGE_COMPUTE_IMAGE_ID = "fd8image000000000002"
# Public Compute images live in a folder of their own, readable by everyone.
STANDARD_IMAGES_FOLDER_ID = "standard-images"

# When the seeded desktops were created (2024-01-01T00:00:00Z): fixed, so answers are reproducible.
SEEDED_AT = 1_704_067_200.0

SERVICE_ACCOUNT_ID = "ajesvcacct0000000001"
SERVICE_ACCOUNT_NAME = "desktop-image-operator"


def clouds() -> list[Cloud]:
    return [Cloud(CLOUD_ID, "fake-cloud"), Cloud(OTHER_CLOUD_ID, "fake-cloud-2")]


def folders() -> list[Folder]:
    return [
        Folder(FOLDER_ID, CLOUD_ID, "default"),
        Folder(SECOND_FOLDER_ID, CLOUD_ID, "staging"),
        Folder(OTHER_CLOUD_FOLDER_ID, OTHER_CLOUD_ID, "other"),
    ]


def desktops() -> list[Desktop]:
    return [
        Desktop(STOPPED_DESKTOP_ID, FOLDER_ID, "analyst-1", "STOPPED", 12 * GIB, 20 * GIB, SEEDED_AT),
        Desktop(RUNNING_DESKTOP_ID, FOLDER_ID, "analyst-2", "ACTIVE", 14 * GIB, 20 * GIB, SEEDED_AT),
        Desktop(
            SECOND_FOLDER_DESKTOP_ID, SECOND_FOLDER_ID, "staging-1", "STOPPED", 18 * GIB, 32 * GIB, SEEDED_AT
        ),
        Desktop(
            OTHER_CLOUD_DESKTOP_ID, OTHER_CLOUD_FOLDER_ID, "other-1", "STOPPED", 10 * GIB, 16 * GIB, SEEDED_AT
        ),
        Desktop(SECOND_STOPPED_DESKTOP_ID, FOLDER_ID, "builder-1", "STOPPED", 25 * GIB, 40 * GIB, SEEDED_AT),
    ]


def compute_images() -> list[ComputeImage]:
    return [
        ComputeImage(COMPUTE_IMAGE_ID, STANDARD_IMAGES_FOLDER_ID, "ubuntu-22-04-desktop", 8 * GIB, 20 * GIB),
        ComputeImage(
            LARGE_COMPUTE_IMAGE_ID, STANDARD_IMAGES_FOLDER_ID, "windows-desktop", 48 * GIB, 64 * GIB
        ),
    ]
