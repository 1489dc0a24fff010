build-dev/src/kernels/simd_avx2.o: src/kernels/simd_avx2.c \
 src/kernels/kern_internal.h include/raffle/kernels.h \
 include/raffle/core.h
src/kernels/kern_internal.h:
include/raffle/kernels.h:
include/raffle/core.h:
