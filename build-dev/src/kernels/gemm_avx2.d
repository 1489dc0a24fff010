build-dev/src/kernels/gemm_avx2.o: src/kernels/gemm_avx2.c \
 src/kernels/gemm_internal.h include/raffle/gemm.h include/raffle/core.h \
 include/raffle/threads.h
src/kernels/gemm_internal.h:
include/raffle/gemm.h:
include/raffle/core.h:
include/raffle/threads.h:
