/* itimer: ITIMER_REAL firing every 10-30 ms (random); SIGALRMs counted. After restore
 * the interval is unchanged and the timer keeps firing: at least 5 more alarms. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile long alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static double now_seconds(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + now.tv_nsec / 1e9;
}

static void wait_for_alarms(long target, double limit_seconds, const char *when)
{
	double deadline = now_seconds() + limit_seconds;
	while (alarms < target) {
		if (now_seconds() > deadline)
			fail("%s: only %ld alarms, waited for %ld", when, alarms, target);
		struct timespec tick = {0, 5 * 1000 * 1000};
		nanosleep(&tick, NULL);
	}
}

int main(int argc, char **argv)
{
	test_init("itimer", argc, argv);
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_alarm;
	action.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &action, NULL);
	long interval_us = 10000 + (long)(test_rand64() % 20000);
	struct itimerval timer = {{0, interval_us}, {0, interval_us}};
	if (setitimer(ITIMER_REAL, &timer, NULL))
		fail("setitimer: %m");
	wait_for_alarms(5, 5, "before dump");

	test_ready();
	test_waitsig();

	long at_term = alarms;
	struct itimerval now;
	getitimer(ITIMER_REAL, &now);
	if (now.it_interval.tv_sec != 0 || now.it_interval.tv_usec != interval_us)
		fail("interval %ld.%06ld s, was %ld us", (long)now.it_interval.tv_sec, (long)now.it_interval.tv_usec,
		     interval_us);
	if (now.it_value.tv_sec == 0 && now.it_value.tv_usec == 0)
		fail("timer disarmed after restore");
	wait_for_alarms(at_term + 5, 5, "after restore");
	pass();
}
