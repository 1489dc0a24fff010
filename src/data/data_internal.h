/* Helpers shared by the data module's files (not public API). */
#ifndef RAFFLE_DATA_INTERNAL_H
#define RAFFLE_DATA_INTERNAL_H

#include "raffle/data.h"

/* A new dataset of n samples of c x h x w with uninitialised x and y, no
 * normalisation recorded (mean 0, std 1) and n_classes 0. Checks the size
 * against ctx's memory cap; `what` names the source in errors. Free with
 * rf_dataset_free. */
rf_status rf_dataset_alloc_(rf_ctx *ctx, const char *name, int64_t n, int c, int h, int w, const char *what,
                            rf_dataset **out);

/* rf_data_load's loader for the CIFAR specs (cifar.c). */
rf_status rf_cifar_load_spec_(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test);

/* ---- streaming tar reader (tar.c) ------------------------------------------
 * Reads a tar archive (POSIX ustar, GNU and v7 headers), gzip-compressed or
 * not (detected by the gzip magic), front to back in one pass without
 * unpacking. Only regular files are reported; directories, links, pax and
 * GNU long-name records are skipped. Every header's checksum, octal fields
 * and size are checked, and a stream that ends inside a header or member or
 * before the end-of-archive blocks is RF_ERR_TRUNCATED. */
typedef struct rf_tar rf_tar;
/* Opens path; returns a new reader (free with rf_tar_close). */
rf_status rf_tar_open(rf_ctx *ctx, const char *path, rf_tar **out);
/* Advances to the next regular file: *name (valid until the next call; the
 * ustar prefix joined with '/') and *size; *name is NULL at the end of the
 * archive, after which the rest of the stream is read so that gzip's CRC
 * is checked. Skips what was left unread of the previous member. */
rf_status rf_tar_next(rf_ctx *ctx, rf_tar *t, const char **name, uint64_t *size);
/* Reads the current member's next n bytes (n <= what is left of it). */
rf_status rf_tar_read(rf_ctx *ctx, rf_tar *t, void *buf, size_t n);
void      rf_tar_close(rf_tar *t);   /* accepts NULL */

#endif
