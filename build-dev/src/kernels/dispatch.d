build-dev/src/kernels/dispatch.o: src/kernels/dispatch.c \
 src/kernels/kern_internal.h include/raffle/kernels.h \
 include/raffle/core.h \
 /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h \
 /usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h
src/kernels/kern_internal.h:
include/raffle/kernels.h:
include/raffle/core.h:
/usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h:
/usr/include/x86_64-linux-gnu/openblas-pthread/openblas_config.h:
