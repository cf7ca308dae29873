"""What the edges and the runtime use below them: metrics, the task set, the retry schedule, the AWS client, logging."""
