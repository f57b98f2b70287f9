"""DiMA core library: data, models, training, evaluation and export. Never imports rclpy."""

__version__ = "0.1.0"
