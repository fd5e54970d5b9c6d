/* rseq_cs: two threads spend nearly all their time inside an rseq critical section of
 * their own (glibc's registration of each thread), so the dump catches them inside one.
 * The section stores the descriptor's address into the area's rseq_cs, then spins, and
 * on every turn checks that rseq_cs still points at the descriptor: while a thread is
 * inside its section, only an abort (the kernel moves it to the abort handler and clears
 * rseq_cs together) may clear it. A thread left inside its section across the dump finds
 * it cleared: the kernel clears rseq_cs whenever it takes the thread back to user space
 * outside the section, as it does for the dump's injected calls, and the section is no
 * longer protected (after a restore on another CPU it would commit unaborted). The kernel
 * and CRIU 4.2 resume such a thread at the abort handler. Verdict after SIGTERM: no
 * thread saw its rseq_cs cleared inside its section; commits and aborts are logged. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/rseq.h>
#include <unistd.h>

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

/* Spins `turns` times inside the section: 0 committed, 1 aborted, 2 rseq_cs found
 * cleared inside the section. */
long cs_run(void *area, uint64_t turns);

#if defined(__x86_64__)
#define HAVE_SECTION 1
asm(".pushsection .data\n"
    ".balign 32\n"
    "cs_descriptor:\n"
    "	.long 0, 0\n"
    "	.quad .Lcs_start, .Lcs_post_commit - .Lcs_start, .Lcs_abort\n"
    ".popsection\n"
    ".text\n"
    ".globl cs_run\n"
    ".type cs_run, @function\n"
    "cs_run:\n"
    "	leaq cs_descriptor(%rip), %rax\n"
    "	movq %rax, 8(%rdi)\n"
    ".Lcs_start:\n"
    "	cmpq %rax, 8(%rdi)\n"
    "	jne .Lcs_cleared\n"
    "	decq %rsi\n"
    "	jnz .Lcs_start\n"
    ".Lcs_post_commit:\n"
    "	xorl %eax, %eax\n"
    "	ret\n"
    ".Lcs_cleared:\n"
    "	movl $2, %eax\n"
    "	ret\n"
    "	.long 0x53053053\n" /* glibc's RSEQ_SIG for x86 */
    ".Lcs_abort:\n"
    "	movl $1, %eax\n"
    "	ret\n"
    ".size cs_run, . - cs_run\n");
#elif defined(__aarch64__)
#define HAVE_SECTION 1
asm(".pushsection .data\n"
    ".balign 32\n"
    "cs_descriptor:\n"
    "	.long 0, 0\n"
    "	.quad .Lcs_start, .Lcs_post_commit - .Lcs_start, .Lcs_abort\n"
    ".popsection\n"
    ".text\n"
    ".globl cs_run\n"
    ".type cs_run, %function\n"
    "cs_run:\n"
    "	adrp x2, cs_descriptor\n"
    "	add x2, x2, :lo12:cs_descriptor\n"
    "	str x2, [x0, #8]\n"
    ".Lcs_start:\n"
    "	ldr x3, [x0, #8]\n"
    "	cmp x3, x2\n"
    "	b.ne .Lcs_cleared\n"
    "	subs x1, x1, #1\n"
    "	b.ne .Lcs_start\n"
    ".Lcs_post_commit:\n"
    "	mov x0, #0\n"
    "	ret\n"
    ".Lcs_cleared:\n"
    "	mov x0, #2\n"
    "	ret\n"
    "	.inst 0xd428bc00\n" /* glibc's RSEQ_SIG for aarch64 */
    ".Lcs_abort:\n"
    "	mov x0, #1\n"
    "	ret\n"
    ".size cs_run, . - cs_run\n");
#endif

#define TURNS (1 << 16)

struct counts {
	uint64_t outcome[3];
	long first_cleared_round;
};

static struct counts counts[2];
static pthread_barrier_t started;

static void spin(struct counts *c)
{
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	c->first_cleared_round = -1;
	for (long round = 0; !test_sig_received(); round++) {
		long r = cs_run(area, TURNS);
		c->outcome[r]++;
		if (r == 2 && c->first_cleared_round < 0)
			c->first_cleared_round = round;
	}
}

static void *second_thread(void *arg)
{
	(void)arg;
	/* A section before the ready message, so both threads are in their loop at the dump. */
	cs_run((char *)__builtin_thread_pointer() + __rseq_offset, 1);
	pthread_barrier_wait(&started);
	spin(&counts[1]);
	return NULL;
}

int main(int argc, char **argv)
{
	test_init("rseq_cs", argc, argv);
#ifndef HAVE_SECTION
	test_skip("no rseq critical section written for this architecture (x86_64 and aarch64 only)");
#else
	if (__rseq_size == 0)
		test_skip("glibc did not register rseq (kernel without rseq, or glibc.pthread.rseq=0)");
	pthread_t thread;
	if (pthread_barrier_init(&started, NULL, 2) || pthread_create(&thread, NULL, second_thread, NULL))
		fail("second thread: %m");
	pthread_barrier_wait(&started);
	test_ready();
	spin(&counts[0]);
	if (pthread_join(thread, NULL))
		fail("join: %m");
	int cleared = 0;
	for (int t = 0; t < 2; t++) {
		struct counts *c = &counts[t];
		test_log("thread %d: %llu commits, %llu aborts, %llu sections that found rseq_cs cleared (first in round %ld)", t,
			 (unsigned long long)c->outcome[0], (unsigned long long)c->outcome[1], (unsigned long long)c->outcome[2],
			 c->first_cleared_round);
		cleared += c->outcome[2] != 0;
	}
	if (cleared)
		fail("%d threads ran on inside an rseq critical section whose rseq_cs was cleared (not moved to the abort handler)",
		     cleared);
	pass();
#endif
}
