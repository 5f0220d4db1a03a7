import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

/** Starts mongo-java-server on host:port; a third argument makes it file-backed (H2). */
public class MongoServerMain {
  /**
   * mongo-java-server 1.47 reports MongoDB 5.0 with wire version 8, but PyMongo 4.20 requires
   * wire version 9 (MongoDB 4.4) or newer, so report 4.4 / wire 9: the commands the project
   * uses (CRUD, aggregate) are the same at that level.
   */
  static final MongoVersion MONGO_4_4 = new MongoVersion() {
    public List<Integer> getVersionArray() { return List.of(4, 4, 0); }
    public int getWireVersion() { return 9; }
  };

  public static void main(String[] args) throws Exception {
    var backend = args.length > 2 ? new H2Backend(args[2]) : new MemoryBackend();
    backend.version(MONGO_4_4);
    var server = new MongoServer(backend);
    // shutdown() also closes the backend, so the H2 file is left consistent on SIGTERM.
    Runtime.getRuntime().addShutdownHook(new Thread(server::shutdown));
    try {
      server.bind(args[0], Integer.parseInt(args[1]));
    } catch (Exception e) { // Netty rethrows the checked BindException undeclared
      // Netty's threads would keep a JVM with no listener alive: exit so the manager sees it.
      e.printStackTrace();
      System.exit(1);
    }
    Thread.currentThread().join();
  }
}
