"""The plan and what it implies: airgap.yaml, the image list, images.lock."""
