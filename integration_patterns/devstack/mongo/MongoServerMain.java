import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

/** Starts mongo-java-server on host:port; a third argument makes it file-backed (H2). */
public class MongoServerMain {
  public static void main(String[] args) throws Exception {
    var backend = args.length > 2 ? new H2Backend(args[2]) : new MemoryBackend();
    var server = new MongoServer(backend);
    // shutdown() also closes the backend, so the H2 file is left consistent on SIGTERM.
    Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
    server.bind(args[0], Integer.parseInt(args[1]));
    Thread.currentThread().join();
  }
}
