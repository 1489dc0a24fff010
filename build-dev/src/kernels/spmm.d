build-dev/src/kernels/spmm.o: src/kernels/spmm.c \
 src/kernels/kern_internal.h include/raffle/kernels.h \
 include/raffle/core.h
src/kernels/kern_internal.h:
include/raffle/kernels.h:
include/raffle/core.h:
