"""Model backends behind one `ChatModel` protocol."""
