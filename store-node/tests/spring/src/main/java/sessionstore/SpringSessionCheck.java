package sessionstore;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.springframework.context.ApplicationListener;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.data.redis.connection.RedisStandaloneConfiguration;
import org.springframework.data.redis.connection.lettuce.LettuceConnectionFactory;
import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.session.FindByIndexNameSessionRepository;
import org.springframework.session.data.redis.RedisIndexedSessionRepository;
import org.springframework.session.data.redis.RedisIndexedSessionRepository.RedisSession;
import org.springframework.session.data.redis.config.annotation.web.http.EnableRedisIndexedHttpSession;
import org.springframework.session.events.AbstractSessionEvent;
import org.springframework.session.events.SessionCreatedEvent;
import org.springframework.session.events.SessionDeletedEvent;
import org.springframework.session.events.SessionExpiredEvent;

/**
 * Spring Session Data Redis's indexed repository (the one {@code @EnableRedisIndexedHttpSession}
 * configures, as a web application gets it, without Spring Boot) against a store-node on
 * 127.0.0.1:{@code args[0]}: creates sessions with a principal name and finds them by it, lets
 * one expire and receives its {@link SessionExpiredEvent} (from the {@code expired} keyspace
 * event), deletes one and receives its {@link SessionDeletedEvent} (from {@code del}). Prints
 * one line per check and exits non-zero on the first failure.
 */
public final class SpringSessionCheck {

    private static final Duration WAIT = Duration.ofSeconds(30);

    /** The application's configuration: the indexed repository and its listener container. */
    @Configuration
    @EnableRedisIndexedHttpSession(maxInactiveIntervalInSeconds = 60)
    static class SessionConfig {

        @Bean
        LettuceConnectionFactory redisConnectionFactory() {
            int port = Integer.parseInt(System.getProperty("store.port"));
            return new LettuceConnectionFactory(new RedisStandaloneConfiguration("127.0.0.1", port));
        }

        @Bean
        Events events() {
            return new Events();
        }
    }

    /** Every session event the application receives, in order. */
    static final class Events implements ApplicationListener<AbstractSessionEvent> {
        final BlockingQueue<AbstractSessionEvent> received = new LinkedBlockingQueue<>();

        @Override
        public void onApplicationEvent(AbstractSessionEvent event) {
            received.add(event);
        }

        /** Waits for an event of {@code type} about session {@code id}, skipping others. */
        <T extends AbstractSessionEvent> T await(Class<T> type, String id) throws InterruptedException {
            long deadline = System.nanoTime() + WAIT.toNanos();
            while (true) {
                long left = deadline - System.nanoTime();
                AbstractSessionEvent event = left > 0 ? received.poll(left, TimeUnit.NANOSECONDS) : null;
                if (event == null) {
                    throw new AssertionError("no " + type.getSimpleName() + " for session " + id + " within " + WAIT);
                }
                if (type.isInstance(event) && id.equals(event.getSessionId())) {
                    return type.cast(event);
                }
            }
        }
    }

    private static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        System.setProperty("store.port", args[0]);
        try (AnnotationConfigApplicationContext context = new AnnotationConfigApplicationContext(SessionConfig.class)) {
            RedisIndexedSessionRepository repository = context.getBean(RedisIndexedSessionRepository.class);
            Events events = context.getBean(Events.class);
            StringRedisTemplate redis = new StringRedisTemplate(context.getBean(LettuceConnectionFactory.class));
            redis.afterPropertiesSet();
            String flags = redis.execute(
                    (org.springframework.data.redis.core.RedisCallback<String>) connection ->
                            connection.serverCommands().getConfig("notify-keyspace-events").getProperty("notify-keyspace-events"));
            check(flags != null && flags.contains("E") && flags.contains("g") && flags.contains("x"),
                    "the repository turned keyspace events on (notify-keyspace-events " + flags + ")");

            String principal = FindByIndexNameSessionRepository.PRINCIPAL_NAME_INDEX_NAME;
            RedisSession alice = repository.createSession();
            alice.setAttribute(principal, "alice");
            alice.setAttribute("cart", "3 items");
            repository.save(alice);
            RedisSession second = repository.createSession();
            second.setAttribute(principal, "alice");
            repository.save(second);
            RedisSession bob = repository.createSession();
            bob.setAttribute(principal, "bob");
            bob.setMaxInactiveInterval(Duration.ofSeconds(1));
            repository.save(bob);
            events.await(SessionCreatedEvent.class, alice.getId());
            check(true, "SessionCreatedEvent for a new session");

            RedisSession loaded = repository.findById(alice.getId());
            check(loaded != null && "3 items".equals(loaded.getAttribute("cart")), "findById gives the session back");
            Map<String, RedisSession> byAlice = repository.findByIndexNameAndIndexValue(principal, "alice");
            check(byAlice.keySet().equals(java.util.Set.of(alice.getId(), second.getId())),
                    "findByIndexNameAndIndexValue finds both sessions of alice");
            check(repository.findByIndexNameAndIndexValue(principal, "bob").containsKey(bob.getId()),
                    "findByIndexNameAndIndexValue finds bob's session");

            SessionExpiredEvent expired = events.await(SessionExpiredEvent.class, bob.getId());
            check(expired.getSession() != null, "SessionExpiredEvent for a session past its max inactive interval");
            check(repository.findById(bob.getId()) == null, "the expired session is gone");

            repository.deleteById(second.getId());
            SessionDeletedEvent deleted = events.await(SessionDeletedEvent.class, second.getId());
            check(deleted.getSession() != null, "SessionDeletedEvent for a deleted session");
            check(repository.findByIndexNameAndIndexValue(principal, "alice").keySet().equals(java.util.Set.of(alice.getId())),
                    "the deleted session left alice's index");
            repository.deleteById(alice.getId());
            events.await(SessionDeletedEvent.class, alice.getId());
        }
        System.out.println("spring session: all checks passed");
    }
}
