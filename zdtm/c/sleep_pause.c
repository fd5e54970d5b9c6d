/* sleep_pause: asleep in pause() at dump time; only SIGTERM may end it. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("sleep_pause", argc, argv);
	test_ready();
	while (!test_sig_received()) {
		int rc = pause();
		if (rc != -1 || errno != EINTR)
			fail("pause returned %d (%m)", rc);
	}
	pass();
}
