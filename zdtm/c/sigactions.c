/* sigactions: handlers with SA_RESTART|SA_SIGINFO, SA_ONSTACK|SA_NODEFER, SA_RESETHAND,
 * an ignored signal, random sa_masks and a random blocked mask. After restore sigaction
 * and sigprocmask report the same, and each handler behaves as its flags say. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static volatile int info_signo, info_code, info_mask_ok, nodefer_depth, nodefer_max, resethand_calls;
static volatile uintptr_t onstack_address;
static sigset_t expected_in_handler;

static void on_info(int sig, siginfo_t *info, void *context)
{
	sigset_t now;
	(void)context;
	info_signo = info->si_signo;
	info_code = info->si_code;
	sigprocmask(SIG_BLOCK, NULL, &now);
	info_mask_ok = 1;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&expected_in_handler, s) && !sigismember(&now, s))
			info_mask_ok = 0;
	(void)sig;
}

static void on_nodefer(int sig)
{
	int local;
	onstack_address = (uintptr_t)&local;
	nodefer_depth++;
	if (nodefer_depth > nodefer_max)
		nodefer_max = nodefer_depth;
	if (nodefer_depth == 1)
		raise(sig); /* SA_NODEFER: runs nested at once */
	nodefer_depth--;
}

static void on_resethand(int sig)
{
	(void)sig;
	resethand_calls++;
}

static const int mask_candidates[] = {SIGHUP, SIGQUIT, SIGPIPE, SIGWINCH, SIGURG, SIGXCPU, SIGVTALRM};
#define CANDIDATES (int)(sizeof(mask_candidates) / sizeof(mask_candidates[0]))

static void random_mask(sigset_t *set)
{
	sigemptyset(set);
	uint64_t bits = test_rand64();
	for (int i = 0; i < CANDIDATES; i++)
		if (bits & (1ULL << i))
			sigaddset(set, mask_candidates[i]);
}

struct expected {
	int sig;
	struct sigaction action;
};

int main(int argc, char **argv)
{
	test_init("sigactions", argc, argv);
	size_t stack_size = 64 * 1024;
	void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stack_t altstack = {.ss_sp = stack, .ss_size = stack_size};
	if (stack == MAP_FAILED || sigaltstack(&altstack, NULL))
		fail("altstack: %m");

	struct expected table[5];
	memset(table, 0, sizeof(table));
	table[0].sig = SIGUSR1;
	table[0].action.sa_sigaction = on_info;
	table[0].action.sa_flags = SA_SIGINFO | SA_RESTART;
	table[1].sig = SIGUSR2;
	table[1].action.sa_handler = on_nodefer;
	table[1].action.sa_flags = SA_ONSTACK | SA_NODEFER;
	table[2].sig = SIGALRM;
	table[2].action.sa_handler = on_resethand;
	table[2].action.sa_flags = SA_RESETHAND;
	table[3].sig = SIGHUP;
	table[3].action.sa_handler = SIG_IGN;
	table[4].sig = SIGRTMIN + 5;
	table[4].action.sa_sigaction = on_info;
	table[4].action.sa_flags = SA_SIGINFO;
	for (int i = 0; i < 5; i++) {
		random_mask(&table[i].action.sa_mask);
		if (sigaction(table[i].sig, &table[i].action, NULL))
			fail("sigaction %d: %m", table[i].sig);
		/* Read back what the kernel holds (glibc adds SA_RESTORER). */
		sigaction(table[i].sig, NULL, &table[i].action);
	}
	sigset_t blocked;
	random_mask(&blocked);
	sigaddset(&blocked, SIGRTMIN + 7);
	sigprocmask(SIG_SETMASK, &blocked, NULL);

	test_ready();
	test_waitsig();

	for (int i = 0; i < 5; i++) {
		struct sigaction now;
		sigaction(table[i].sig, NULL, &now);
		if (now.sa_handler != table[i].action.sa_handler)
			fail("signal %d: handler %p, was %p", table[i].sig, (void *)now.sa_handler,
			     (void *)table[i].action.sa_handler);
		if (now.sa_flags != table[i].action.sa_flags)
			fail("signal %d: flags %#x, was %#x", table[i].sig, now.sa_flags, table[i].action.sa_flags);
		if (now.sa_restorer != table[i].action.sa_restorer)
			fail("signal %d: restorer changed", table[i].sig);
		for (int s = 1; s < NSIG; s++)
			if (sigismember(&now.sa_mask, s) != sigismember(&table[i].action.sa_mask, s))
				fail("signal %d: sa_mask bit %d changed", table[i].sig, s);
	}
	sigset_t blocked_now;
	sigprocmask(SIG_BLOCK, NULL, &blocked_now);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP && sigismember(&blocked_now, s) != sigismember(&blocked, s))
			fail("blocked mask bit %d changed", s);

	/* Behaviour: each handler as its flags say. */
	sigprocmask(SIG_UNBLOCK, &blocked, NULL);
	expected_in_handler = table[0].action.sa_mask;
	raise(SIGUSR1);
	if (info_signo != SIGUSR1 || info_code != SI_TKILL || !info_mask_ok)
		fail("SA_SIGINFO handler: signo %d code %d mask ok %d", info_signo, info_code, info_mask_ok);
	raise(SIGUSR2);
	if (nodefer_max != 2)
		fail("SA_NODEFER handler nested %d deep, expected 2", nodefer_max);
	if (onstack_address < (uintptr_t)stack || onstack_address >= (uintptr_t)stack + stack_size)
		fail("SA_ONSTACK handler ran at %#lx, off the altstack", (unsigned long)onstack_address);
	raise(SIGALRM);
	struct sigaction reset;
	sigaction(SIGALRM, NULL, &reset);
	if (resethand_calls != 1 || reset.sa_handler != SIG_DFL)
		fail("SA_RESETHAND: %d calls, handler %p", resethand_calls, (void *)reset.sa_handler);
	raise(SIGHUP); /* ignored: nothing happens */
	pass();
}
