/* net: SHA-256 vectors, URL policy, redaction, file:// downloads with cache,
 * pinning and resume. HTTP/WebDAV paths run against a real nginx in
 * tests/integration/remote_store.sh. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raffle/net.h"

Test(net, sha256_known_answers) {
    char hex[65];
    rf_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    rf_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    rf_sha256_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in odd-sized pieces */
    rf_sha256 s; rf_sha256_init(&s);
    char a[997]; memset(a, 'a', sizeof a);
    size_t left = 1000000;
    while (left) { size_t k = left < sizeof a ? left : sizeof a; rf_sha256_update(&s, a, k); left -= k; }
    unsigned char d[32]; rf_sha256_final(&s, d);
    cr_assert_eq(d[0], 0xcd); cr_assert_eq(d[1], 0xc7); cr_assert_eq(d[31], 0xd0);
}

Test(net, url_policy) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_url_check(&ctx, "http://127.0.0.1/x"), RF_OK);
    cr_assert_eq(rf_url_check(&ctx, "https://example.org/x"), RF_OK);
    cr_assert_eq(rf_url_check(&ctx, "ftp://example.org/x"), RF_ERR_INVALID);
    cr_assert_eq(rf_url_check(&ctx, "gopher://x"), RF_ERR_INVALID);
    cr_assert_eq(rf_url_check(&ctx, "/etc/passwd"), RF_ERR_INVALID);
    cr_assert_eq(rf_url_check(&ctx, "http://a/\nb"), RF_ERR_INVALID);
    setenv("RAFFLE_FILE_ROOTS", "/tmp", 1);
    cr_assert_eq(rf_url_check(&ctx, "file:///etc/passwd"), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "RAFFLE_FILE_ROOTS"));
    cr_assert_eq(rf_url_check(&ctx, "file:///tmp/../etc/passwd"), RF_ERR_INVALID);
    cr_assert_eq(rf_url_check(&ctx, "file:///tmp/whatever-new-file"), RF_OK);
    cr_assert_eq(rf_url_check(&ctx, "file://relative/path"), RF_ERR_INVALID);
}

Test(net, redaction_hides_credentials) {
    char out[256];
    rf_url_redact("https://alice:s3cret@host.example/a/b", out, sizeof out);
    cr_assert_str_eq(out, "https://host.example/a/b");
    rf_url_redact("http://host/x@y", out, sizeof out);
    cr_assert_str_eq(out, "http://host/x@y");
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_url_check(&ctx, "ftp://bob:hunter2@h/x");
    cr_assert_null(strstr(rf_ctx_error(&ctx), "hunter2"));
}

static void write_file(const char *p, const char *data, size_t n) {
    FILE *f = fopen(p, "wb"); cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, n, f), n); fclose(f);
}

Test(net, file_download_cache_pin_resume) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char dir[] = "/tmp/rf_net_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    setenv("RAFFLE_FILE_ROOTS", dir, 1);
    char src[512], cache[512], url[600], dest[512];
    snprintf(src, sizeof src, "%s/src.bin", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    static char data[200000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 131 + 7);
    write_file(src, data, sizeof data);
    char want[65];
    rf_sha256_hex(data, sizeof data, want);
    snprintf(url, sizeof url, "file://%s", src);

    rf_fetch_opts o; rf_fetch_opts_default(&o);
    o.cache_dir = cache; o.sha256 = want; o.retries = 0;
    char got[1024];
    cr_assert_eq(rf_fetch_url(&ctx, url, &o, got, sizeof got), RF_OK, "%s", rf_ctx_error(&ctx));
    char h[65];
    cr_assert_eq(rf_sha256_file(&ctx, got, h), RF_OK);
    cr_assert_str_eq(h, want);
    /* cached: works with the source gone */
    unlink(src);
    char again[1024];
    cr_assert_eq(rf_fetch_url(&ctx, url, &o, again, sizeof again), RF_OK);
    cr_assert_str_eq(again, got);
    /* wrong pin: checksum error, nothing left in the cache under that key */
    write_file(src, data, sizeof data);
    char bad[65]; memset(bad, 'a', 64); bad[64] = 0;
    o.sha256 = bad;
    cr_assert_eq(rf_fetch_url(&ctx, url, &o, again, sizeof again), RF_ERR_CHECKSUM);
    /* resume: a partial .part file is continued, not restarted */
    snprintf(dest, sizeof dest, "%s/out.bin", dir);
    char part[600]; snprintf(part, sizeof part, "%s.part", dest);
    o.sha256 = want;
    cr_assert_eq(rf_fetch_to_file(&ctx, url, &o, dest), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_sha256_file(&ctx, dest, h), RF_OK);
    cr_assert_str_eq(h, want);
    /* missing source: not found, no file left behind */
    snprintf(url, sizeof url, "file://%s/missing.bin", dir);
    o.sha256 = NULL;
    snprintf(dest, sizeof dest, "%s/never.bin", dir);
    cr_assert_neq(rf_fetch_to_file(&ctx, url, &o, dest), RF_OK);
    cr_assert_neq(access(dest, F_OK), 0);
    char cmd[600]; snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(net, mirror_spools_while_server_is_down) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char dir[] = "/tmp/rf_mirror_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char p[600]; snprintf(p, sizeof p, "%s/report.json", dir);
    write_file(p, "{}", 2);
    rf_mirror *m;
    /* port 9 on loopback: nothing listens, connection refused at once */
    cr_assert_eq(rf_mirror_open(&ctx, "http://127.0.0.1:9/store/", dir, &m), RF_OK);
    cr_assert_eq(rf_mirror_push(&ctx, m, "report.json"), RF_OK);
    int pending = -1;
    cr_assert_eq(rf_mirror_flush(&ctx, m, &pending), RF_OK);
    cr_assert_eq(pending, 1);
    rf_mirror_free(m);
    /* the spool survives a restart */
    cr_assert_eq(rf_mirror_open(&ctx, "http://127.0.0.1:9/store/", dir, &m), RF_OK);
    cr_assert_eq(rf_mirror_flush(&ctx, m, &pending), RF_OK);
    cr_assert_eq(pending, 1);
    rf_mirror_free(m);
    cr_assert_eq(rf_mirror_open(&ctx, "file:///tmp/x", dir, &m), RF_ERR_INVALID);
    char cmd[600]; snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Runs against a real WebDAV server when RAFFLE_TEST_DAV_URL is set
 * (tests/integration/remote_store.sh starts nginx and sets it). */
Test(net, dav_roundtrip_against_server) {
    const char *base = getenv("RAFFLE_TEST_DAV_URL");
    if (!base) cr_skip_test("RAFFLE_TEST_DAV_URL not set (run by tests/integration/remote_store.sh)");
    rf_ctx ctx; rf_ctx_init(&ctx);
    static unsigned char big[3 << 20];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (unsigned char)(i * 2654435761u >> 13);
    cr_assert_eq(rf_dav_publish(&ctx, base, "unit/a/b/blob.bin", big, sizeof big), RF_OK, "%s", rf_ctx_error(&ctx));
    unsigned char *got; size_t n; long code;
    cr_assert_eq(rf_dav_get(&ctx, base, "unit/a/b/blob.bin", &got, &n, &code), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(code, 200);
    cr_assert_eq(n, sizeof big);
    cr_assert_eq(memcmp(got, big, n), 0);
    rf_free(got);
    /* publish again overwrites atomically */
    cr_assert_eq(rf_dav_publish(&ctx, base, "unit/a/b/blob.bin", "xy", 2), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_dav_get(&ctx, base, "unit/a/b/blob.bin", &got, &n, NULL), RF_OK);
    cr_assert_eq(n, 2); cr_assert_eq(memcmp(got, "xy", 2), 0);
    rf_free(got);
    cr_assert_eq(rf_dav_mkcol(&ctx, base, "unit/a", NULL), RF_OK);  /* exists: still ok */
    cr_assert_eq(rf_dav_get(&ctx, base, "unit/missing.bin", &got, &n, &code), RF_ERR_NOTFOUND);
    cr_assert_eq(code, 404);
    cr_assert_eq(rf_dav_put(&ctx, base, "../escape", "x", 1, NULL), RF_ERR_INVALID);
    /* the mirror uploads what was spooled once the server is reachable */
    char dir[] = "/tmp/rf_mirror_dav_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char p[600]; snprintf(p, sizeof p, "%s/report.json", dir);
    write_file(p, "{\"tasks\":[]}", 12);
    rf_mirror *m;
    char mbase[1024]; snprintf(mbase, sizeof mbase, "%smirror/", base);
    cr_assert_eq(rf_mirror_open(&ctx, mbase, dir, &m), RF_OK);
    cr_assert_eq(rf_mirror_push(&ctx, m, "report.json"), RF_OK);
    int pending = -1;
    cr_assert_eq(rf_mirror_flush(&ctx, m, &pending), RF_OK);
    cr_assert_eq(pending, 0);
    rf_mirror_free(m);
    cr_assert_eq(rf_dav_get(&ctx, mbase, "report.json", &got, &n, NULL), RF_OK);
    cr_assert_eq(n, 12);
    rf_free(got);
    char cmd[600]; snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
