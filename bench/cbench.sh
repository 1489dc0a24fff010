#!/bin/sh
# Builds one stand-alone benchmark source against build/libraffle.a and runs it:
#   bench/cbench.sh bench/gemm/gemm_bench.c [args...]
#   bench/cbench.sh bench/quant/int8_breakeven.c
# (make first; the binary goes to build/bench/<name>).
set -eu
src=$1; shift
cd "$(dirname "$0")/.."
[ -f build/libraffle.a ] || make -s all
mkdir -p build/bench
bin=build/bench/$(basename "$src" .c)
# shellcheck disable=SC2046
cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude -Isrc \
   $(pkg-config --cflags libzstd libcjson libcurl zlib openblas ompi-c) -o "$bin" "$src" build/libraffle.a \
   $(pkg-config --libs libzstd libcjson libcurl zlib openblas ompi-c) -lm -lpthread
exec "$bin" "$@"
