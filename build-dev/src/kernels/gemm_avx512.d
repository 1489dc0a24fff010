build-dev/src/kernels/gemm_avx512.o: src/kernels/gemm_avx512.c \
 src/kernels/gemm_internal.h include/raffle/gemm.h include/raffle/core.h \
 include/raffle/threads.h
src/kernels/gemm_internal.h:
include/raffle/gemm.h:
include/raffle/core.h:
include/raffle/threads.h:
