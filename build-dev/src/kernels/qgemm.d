build-dev/src/kernels/qgemm.o: src/kernels/qgemm.c \
 src/kernels/kern_internal.h include/raffle/kernels.h \
 include/raffle/core.h
src/kernels/kern_internal.h:
include/raffle/kernels.h:
include/raffle/core.h:
