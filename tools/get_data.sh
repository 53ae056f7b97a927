#!/usr/bin/env bash
# Make sure Fashion-MNIST's four IDX files are available locally (miniai never downloads them at test time).
set -euo pipefail
files="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
has() { for f in $files; do [ -e "$1/$f.gz" ] || [ -e "$1/$f" ] || return 1; done; }
if [ -n "${MINIAI_DATA:-}" ] && has "$MINIAI_DATA"; then echo "Fashion-MNIST: using MINIAI_DATA=$MINIAI_DATA"; exit 0; fi
sys=/usr/share/datasets/fashion-mnist
if has $sys; then echo "Fashion-MNIST: found in $sys"; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST: installing Debian package dataset-fashion-mnist"
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  has $sys && exit 0
fi
cat >&2 <<MSG
Fashion-MNIST not found. Get it with one of:
  sudo apt-get install dataset-fashion-mnist     (Debian/Ubuntu; files go to $sys)
  export MINIAI_DATA=/folder/with/the/4/idx/files (train-images-idx3-ubyte[.gz], ...)
Online, miniai can also fetch zalando-datasets/fashion_mnist from the Hugging Face hub when no local copy exists.
MSG
exit 1
