/* zdtmtst.c: the C side of the zdtm test library; protocol in src/lib.rs. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int sig_received;
static const char *test_name = "?";
static const char *outdir = ".";
static int ready_fd = -1;
static uint64_t token;
static char ready_message[64];

static void on_sigterm(int sig)
{
	(void)sig;
	sig_received = 1;
}

void test_init(const char *name, int argc, char **argv)
{
	const char *fd_text = getenv("ZDTM_READY_FD");
	(void)argc;
	(void)argv;
	test_name = name;
	/* One program may serve several catalog entries (different arguments). */
	if (getenv("ZDTM_NAME") && *getenv("ZDTM_NAME"))
		test_name = getenv("ZDTM_NAME");
	outdir = getenv("ZDTM_OUTDIR");
	if (!outdir) {
		fprintf(stderr, "%s: ZDTM_OUTDIR not set: run me from the zdtm harness\n", name);
		exit(2);
	}
	if (fd_text && *fd_text)
		ready_fd = atoi(fd_text);

	pid_t launcher = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid > 0)
		_exit(0);
	/* Wait until the launcher is gone and we are the subreaper's child, so the process
	 * tree is settled before the test builds its state. */
	while (getppid() == launcher)
		sched_yield();
	setsid();

	char log[4096];
	int null_fd = open("/dev/null", O_RDONLY);
	snprintf(log, sizeof(log), "%s/%s.log", outdir, test_name);
	int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (null_fd >= 0) {
		dup2(null_fd, 0);
		if (null_fd > 2)
			close(null_fd);
	}
	if (log_fd >= 0) {
		dup2(log_fd, 1);
		dup2(log_fd, 2);
		if (log_fd > 2)
			close(log_fd);
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	/* Whatever the harness's own parent leaked must not be open at dump time. */
	if (ready_fd > 3)
		syscall(SYS_close_range, 3, ready_fd - 1, 0);
	syscall(SYS_close_range, ready_fd >= 3 ? ready_fd + 1 : 3, ~0U, 0);

	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_sigterm; /* no SA_RESTART: sleeps end with EINTR */
	sigemptyset(&action.sa_mask);
	sigaction(SIGTERM, &action, NULL);

	token = test_rand64();
	snprintf(ready_message, sizeof(ready_message), "%d %016llx\n", getpid(), (unsigned long long)token);
}

int test_ready_fd(void)
{
	return ready_fd;
}

const char *test_ready_message(void)
{
	return ready_message;
}

void test_ready_sent(void)
{
	ready_fd = -1;
}

void test_ready(void)
{
	if (ready_fd < 0)
		return;
	if (write(ready_fd, ready_message, strlen(ready_message)) < 0)
		test_log("write ready pipe: %s", strerror(errno));
	close(ready_fd);
	ready_fd = -1;
}

void test_skip(const char *reason)
{
	if (ready_fd >= 0) {
		char message[512];
		snprintf(message, sizeof(message), "skip %s\n", reason);
		if (write(ready_fd, message, strlen(message)) < 0)
			test_log("write ready pipe: %s", strerror(errno));
		close(ready_fd);
	}
	exit(0);
}

int test_sig_received(void)
{
	return sig_received;
}

volatile int *test_sig_flag(void)
{
	return &sig_received;
}

void test_waitsig(void)
{
	while (!sig_received)
		syscall(SYS_futex, &sig_received, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void write_verdict(const char *verdict)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.out", outdir, test_name);
	FILE *out = fopen(path, "w");
	if (!out) {
		fprintf(stderr, "%s: open %s: %s\n", test_name, path, strerror(errno));
		exit(3);
	}
	fprintf(out, "%s\ntoken %016llx\n", verdict, (unsigned long long)token);
	fclose(out);
	fprintf(stderr, "%s: %s\n", test_name, verdict);
}

void pass(void)
{
	write_verdict("PASS");
	exit(0);
}

void fail(const char *fmt, ...)
{
	char verdict[2048] = "FAIL: ";
	va_list args;
	va_start(args, fmt);
	vsnprintf(verdict + 6, sizeof(verdict) - 6, fmt, args);
	va_end(args);
	write_verdict(verdict);
	exit(1);
}

void test_log(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fputc('\n', stderr);
}

const char *test_path(char *buf, size_t size, const char *file)
{
	snprintf(buf, size, "%s/%s", outdir, file);
	return buf;
}

uint64_t test_rand64(void)
{
	uint64_t value = 0;
	if (getrandom(&value, sizeof(value), 0) != sizeof(value)) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		value = (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)now.tv_sec;
	}
	return value;
}

uint64_t test_pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + index * 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void test_fill(void *buf, size_t bytes, uint64_t seed)
{
	uint64_t *words = buf;
	for (size_t i = 0; i < bytes / 8; i++)
		words[i] = test_pattern_word(seed, i);
}

long test_check(const void *buf, size_t bytes, uint64_t seed)
{
	const uint64_t *words = buf;
	for (size_t i = 0; i < bytes / 8; i++)
		if (words[i] != test_pattern_word(seed, i))
			return (long)(i * 8);
	return -1;
}
