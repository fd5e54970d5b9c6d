/* zdtmtst.h: the C side of the zdtm test library (the Rust side is src/testlib.rs).
 *
 * A test calls test_init() first (daemonizes, installs the SIGTERM handler), builds its
 * state, calls test_ready() (writes "<pid> <token>" into the ready pipe and closes it),
 * waits with test_waitsig() or its own sleep until test_sig_received(), checks its state
 * and ends with pass() or fail(). */
#ifndef ZDTMTST_H
#define ZDTMTST_H

#include <stddef.h>
#include <stdint.h>

/* Daemonizes, redirects stdio, installs the SIGTERM handler. */
void test_init(const char *name, int argc, char **argv);
/* State is built: tell the harness (and close the ready pipe). */
void test_ready(void);
/* This test cannot run here: tell the harness why and exit. */
void test_skip(const char *reason) __attribute__((noreturn));
/* Sleeps in futex(FUTEX_WAIT) until SIGTERM has arrived. */
void test_waitsig(void);
/* Nonzero once SIGTERM arrived. */
int test_sig_received(void);
/* Address of the flag the SIGTERM handler sets to 1 (for asm spin loops). */
volatile int *test_sig_flag(void);
/* Writes "PASS" and exits 0. */
void pass(void) __attribute__((noreturn));
/* Writes "FAIL: <message>" and exits 1. */
void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Log line into <outdir>/<name>.log. */
void test_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* <outdir>/<file> into buf. */
const char *test_path(char *buf, size_t size, const char *file);
/* 64 random bits from getrandom(2). */
uint64_t test_rand64(void);
/* Pattern word at index for seed (splitmix64, same as the Rust side). */
uint64_t test_pattern_word(uint64_t seed, uint64_t index);
void test_fill(void *buf, size_t bytes, uint64_t seed);
/* Returns -1 when the pattern holds, else the byte offset of the first bad word. */
long test_check(const void *buf, size_t bytes, uint64_t seed);
/* The ready pipe's fd, or -1 (for tests that signal readiness from asm). */
int test_ready_fd(void);
/* The ready message test_ready() would send (for tests that send it from asm). */
const char *test_ready_message(void);
/* After an asm block sent the ready message and closed the fd itself. */
void test_ready_sent(void);

#endif
