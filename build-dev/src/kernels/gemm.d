build-dev/src/kernels/gemm.o: src/kernels/gemm.c \
 src/kernels/gemm_internal.h include/raffle/gemm.h include/raffle/core.h \
 include/raffle/threads.h include/raffle/kernels.h
src/kernels/gemm_internal.h:
include/raffle/gemm.h:
include/raffle/core.h:
include/raffle/threads.h:
include/raffle/kernels.h:
