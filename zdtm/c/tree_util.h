/* tree_util.h: helpers for tests of process trees (header-only, static). A child is
 * forked with fork_child(): it builds its state, calls child_ready() (its parent waits for
 * that before going on), sleeps in test_waitsig() until its parent forwards the
 * harness's SIGTERM, checks itself and returns its exit code (0: fine; it logs why not).
 * The parent ends with reap_ok(), which waits for the child's verdict. */
#ifndef TREE_UTIL_H
#define TREE_UTIL_H
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int tree_ready_pipe = -1;

/* Forks a child running fn(arg) and returns its pid once it called child_ready(). */
static pid_t fork_child(int (*fn)(void *), void *arg)
{
	int ends[2];
	if (pipe(ends))
		fail("pipe: %m");
	pid_t pid = fork();
	if (pid < 0)
		fail("fork: %m");
	if (pid == 0) {
		if (test_ready_fd() >= 0)
			close(test_ready_fd());
		test_ready_sent();
		close(ends[0]);
		/* Not the parent's own ready pipe: its parent waits for that one's EOF. */
		if (tree_ready_pipe >= 0)
			close(tree_ready_pipe);
		tree_ready_pipe = ends[1];
		_exit(fn(arg));
	}
	close(ends[1]);
	char byte;
	if (read(ends[0], &byte, 1) != 1)
		fail("child %d ended before it was ready", pid);
	/* EOF: the child has closed its end too, so no stray pipe is open at dump time. */
	while (read(ends[0], &byte, 1) > 0)
		;
	close(ends[0]);
	return pid;
}

/* In a child: state built, let the parent go on. */
static void child_ready(void)
{
	if (tree_ready_pipe >= 0) {
		if (write(tree_ready_pipe, "r", 1) != 1)
			test_log("child %d: write ready: %m", getpid());
		close(tree_ready_pipe);
		tree_ready_pipe = -1;
	}
}

/* In a child: log why it fails and return the failing exit code. */
#define CHILD_FAIL(fmt, ...)                                                  \
	do {                                                                  \
		test_log("child %d: " fmt, (int)getpid(), ##__VA_ARGS__);     \
		return 1;                                                     \
	} while (0)

/* Forwards "check now" to a child and waits for its verdict; 0 when it exited 0. */
static int reap_ok(pid_t pid)
{
	int status;
	kill(pid, SIGTERM);
	if (waitpid(pid, &status, 0) != pid) {
		test_log("waitpid %d: %m", pid);
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		test_log("child %d ended with status %#x", pid, status);
		return -1;
	}
	return 0;
}

/* One letter of a direct child's /proc state ('?' when not found). The child is found
 * through /proc/thread-self/children and its NSpid, so this also works in a pid namespace
 * whose /proc is the host's. */
static char proc_state(pid_t pid)
{
	char buf[4096], path[64], line[256];
	FILE *f = fopen("/proc/thread-self/children", "r");
	if (!f)
		return '?';
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		snprintf(path, sizeof(path), "/proc/%s/status", tok);
		FILE *status = fopen(path, "r");
		if (!status)
			continue;
		char state = '?';
		pid_t ns_pid = -1;
		while (fgets(line, sizeof(line), status)) {
			if (!strncmp(line, "State:", 6))
				sscanf(line + 6, " %c", &state);
			if (!strncmp(line, "NSpid:", 6)) {
				char *last = strrchr(line, '\t');
				ns_pid = atoi(last ? last + 1 : line + 6);
			}
		}
		fclose(status);
		if (ns_pid == pid)
			return state;
	}
	return '?';
}

/* The calling thread's children as pids of its own namespace; returns how many. */
static int children_ns_pids(pid_t *out, int max)
{
	char buf[4096], path[64], line[256];
	FILE *f = fopen("/proc/thread-self/children", "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	int count = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, " \n", &save); tok && count < max; tok = strtok_r(NULL, " \n", &save)) {
		snprintf(path, sizeof(path), "/proc/%s/status", tok);
		FILE *status = fopen(path, "r");
		if (!status)
			continue;
		while (fgets(line, sizeof(line), status))
			if (!strncmp(line, "NSpid:", 6)) {
				char *last = strrchr(line, '\t');
				out[count++] = atoi(last ? last + 1 : line + 6);
			}
		fclose(status);
	}
	return count;
}

static pid_t raw_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

#endif
