/* altstack_off: the main thread has no alternate signal stack (SS_DISABLE) and a SIGUSR1
 * handler with SA_ONSTACK. After restore sigaltstack must still report SS_DISABLE, and the
 * handler must run on the ordinary stack (a restorer that leaves its own altstack behind
 * makes the kernel build the frame there: SIGSEGV, or the handler runs off the stack). */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>

static volatile uintptr_t handler_sp;

static void record(int sig)
{
	volatile char local = 0;
	(void)sig;
	handler_sp = (uintptr_t)&local;
}

int main(int argc, char **argv)
{
	stack_t off = { .ss_flags = SS_DISABLE }, now;
	struct sigaction sa;
	volatile char here = 0;
	uintptr_t main_sp = (uintptr_t)&here;

	test_init("altstack_off", argc, argv);
	if (sigaltstack(&off, NULL))
		fail("sigaltstack(SS_DISABLE): %m");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = record;
	sa.sa_flags = SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		fail("sigaction: %m");
	test_ready();
	test_waitsig();
	if (sigaltstack(NULL, &now))
		fail("sigaltstack: %m");
	if (!(now.ss_flags & SS_DISABLE))
		fail("altstack %p+%#zx flags %d after restore, was disabled", now.ss_sp,
		     now.ss_size, now.ss_flags);
	raise(SIGUSR1);
	/* The handler's frame sits just below this function's on the same stack. */
	if (handler_sp > main_sp || main_sp - handler_sp > (1 << 20))
		fail("handler ran at %#lx, not on the main stack near %#lx",
		     (unsigned long)handler_sp, (unsigned long)main_sp);
	pass();
}
